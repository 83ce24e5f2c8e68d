"""GET /users/{user_id}: a known user's recent history (what user_to_item recommends from)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from bert4rec.api.deps import RecommenderDep
from bert4rec.api.schemas import ErrorResponse, ItemResponse, UserResponse

router = APIRouter(prefix="/users", tags=["users"])


# `:path` so that ids containing "/" (the vocabulary allows any string) are reachable too
@router.get("/{user_id:path}", responses={404: {"model": ErrorResponse, "description": "Unknown user id."}})
def get_user(
    user_id: str, rec: RecommenderDep, limit: Annotated[int, Query(ge=1, le=1000)] = 20
) -> UserResponse:
    """The user's last `limit` known items, oldest first, with titles and metadata."""
    history = rec.history(user_id)
    items = [ItemResponse(**rec.item_summary(item_id)) for item_id in history[-limit:]]
    return UserResponse(
        user_id=rec.vocab.user_ids[rec.vocab.user_idx(user_id)], history_length=len(history), items=items
    )
