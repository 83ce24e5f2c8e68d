"""GET /items?query=: item search (for pickers such as the demo page); GET /items/{item_id}: metadata."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from bert4rec.api.deps import RecommenderDep
from bert4rec.api.schemas import ErrorResponse, ItemResponse, ItemSearchResponse

router = APIRouter(prefix="/items", tags=["items"])


@router.get("")
def search_items(
    rec: RecommenderDep,
    query: Annotated[str, Query(max_length=200, description="Part of a title or an item id.")] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ItemSearchResponse:
    """Trained items whose title or id contains `query`, case-insensitively (popular items first)."""
    return ItemSearchResponse(
        query=query, items=[ItemResponse(**item) for item in rec.search_items(query, limit)]
    )


@router.get("/{item_id:path}", responses={404: {"model": ErrorResponse, "description": "Unknown item id."}})
def get_item(item_id: str, rec: RecommenderDep) -> ItemResponse:
    """Title and metadata of a trained item (`item_id` as in the training data)."""
    info = rec.item_info(item_id)
    found = info.pop("item_id")
    if rec.display_col:
        info.pop(rec.display_col, None)
    return ItemResponse(item_id=found, title=rec.title(found), metadata=info)
