"""POST /recommend: one endpoint, four query types (a discriminated union on `query_type`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from bert4rec.api.deps import RecommenderDep
from bert4rec.api.schemas import (
    ContextualQuery,
    ErrorResponse,
    ItemToItemQuery,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    SequentialQuery,
    UserToItemQuery,
)
from bert4rec.inference.recommender import RecommendationList

router = APIRouter(tags=["recommend"])


@router.post(
    "/recommend",
    responses={
        400: {"model": ErrorResponse, "description": "The body could not be read (not UTF-8 text)."},
        404: {"model": ErrorResponse, "description": "Unknown item or user id."},
    },
)
async def recommend(query: Annotated[RecommendRequest, Body()], rec: RecommenderDep) -> RecommendResponse:
    """Rank items for one query: `item_to_item`, `user_to_item`, `contextual` or `sequential`."""
    # async on purpose: a query is ~1 ms of CPU and handing it to the thread pool cost ~0.2 ms more
    # per request (docs/serving-scale.md); processes (`serve --workers`) give parallelism
    common: dict[str, Any] = {
        "k": query.top_k,
        "filters": query.metadata_filters(),
        "filter_seen": query.exclude_seen,
    }
    result: RecommendationList
    if isinstance(query, ItemToItemQuery):
        result = rec.item_to_item(query.item_id, item_text=query.item_text, **common)
    elif isinstance(query, UserToItemQuery):
        result = rec.user_to_item(query.user_id, **common)
    elif isinstance(query, ContextualQuery):
        result = rec.contextual(query.user_id, query.item_id, **common)
    else:
        assert isinstance(query, SequentialQuery)
        result = rec.sequential(query.session_items, **common)
    return RecommendResponse(
        query_type=query.query_type,
        path=result.path,  # type: ignore[arg-type]
        items=[
            RecommendedItem(rank=r.rank, item_id=r.item_id, title=r.title, score=r.score, metadata=r.metadata)
            for r in result.items
        ],
        history_length=result.history_length,
        used_length=result.used_length,
        truncated=result.truncated,
        max_history=rec.max_history,
        intent_vector=result.vector.tolist() if query.return_vector and result.vector is not None else None,
    )
