"""FastAPI dependencies: the one Recommender the app was built with, and how a server loads one."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from bert4rec.api.settings import ServeSettings
from bert4rec.inference.recommender import Recommender


def load_served(path: Path | str, settings: ServeSettings) -> Recommender:
    """A model folder loaded for serving with `settings` (backend, index, threads): every stored
    user's intent is computed now, so `user_to_item` is one vector search per request. Used when
    the app starts and when `POST /model` swaps in a job's model. Raises ArtifactError."""
    return Recommender.load(
        path,
        backend=settings.backend,
        threads=settings.torch_threads or 1,
        index=settings.index,
        index_threshold=settings.index_threshold,
        precompute=True,
        intents_cache=settings.intents_cache,
        qdrant=settings.qdrant_options() if settings.index == "qdrant" else None,
    )


def freeze_heap() -> None:
    """Collect once, then move every object alive now into the collector's permanent generation
    (gc.freeze): the loaded model's vocabularies, histories and catalogue are never garbage, and
    without this each full collection walked all of them while the server stalled. Called when the
    server starts and after POST /model swaps the model (`ServeSettings.gc_freeze`); what an earlier
    call froze is released first (gc.unfreeze), so a swapped-out model is collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def get_recommender(request: Request) -> Recommender:
    """The app's Recommender (set by `create_app`)."""
    recommender: Recommender = request.app.state.recommender
    return recommender


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
