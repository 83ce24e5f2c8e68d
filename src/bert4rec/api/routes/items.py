"""GET /items/{item_id}: item metadata."""

from __future__ import annotations

from fastapi import APIRouter

from bert4rec.api.deps import RecommenderDep
from bert4rec.api.schemas import ErrorResponse, ItemResponse

router = APIRouter(prefix="/items", tags=["items"])


@router.get("/{item_id}", responses={404: {"model": ErrorResponse, "description": "Unknown item id."}})
def get_item(item_id: str, rec: RecommenderDep) -> ItemResponse:
    """Title and metadata of a trained item (`item_id` as in the training data)."""
    info = rec.item_info(item_id)
    found = info.pop("item_id")
    if rec.display_col:
        info.pop(rec.display_col, None)
    return ItemResponse(item_id=found, title=rec.title(found), metadata=info)
