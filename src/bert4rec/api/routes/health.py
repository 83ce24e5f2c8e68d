"""GET /health: is the model loaded, and which one."""

from __future__ import annotations

from fastapi import APIRouter

from bert4rec.api.deps import RecommenderDep
from bert4rec.api.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/health")
def health(rec: RecommenderDep) -> HealthResponse:
    """Model type, size, fingerprints and the filterable metadata fields."""
    return HealthResponse(
        model_type=rec.model_type,
        n_items=rec.vocab.n_items,
        n_users=rec.vocab.n_users,
        max_history=rec.max_history,
        fingerprint=rec.fingerprint,
        data_fingerprint=rec.data_fingerprint,
        filter_fields=rec.filter_fields,
        text_cold_start=rec.content is not None,
    )
