"""GET /health: is the model loaded, and which one (and which version of its item catalogue)."""

from __future__ import annotations

from fastapi import APIRouter

from bert4rec.api.deps import RecommenderDep
from bert4rec.api.schemas import CatalogHealthResponse, CatalogInfo

router = APIRouter(tags=["health"])


@router.get("/health")
def health(rec: RecommenderDep) -> CatalogHealthResponse:
    """Model type, size, fingerprints, the filterable metadata fields and the catalogue version."""
    state = rec.state  # one version: the counts and the catalogue agree
    return CatalogHealthResponse(
        model_type=rec.model_type,
        n_items=state.catalog.n_items,
        n_users=rec.bundle.vocab.n_users,
        max_history=rec.max_history,
        fingerprint=rec.fingerprint,
        data_fingerprint=rec.data_fingerprint,
        filter_fields=state.catalog.filter.fields,
        text_cold_start=state.content is not None,
        catalog=CatalogInfo(**state.catalog.info()),
        accepts_new_items=rec.has_text_vectors,
    )
