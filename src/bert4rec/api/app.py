"""The app factory: `create_app(path_or_recommender)` -> a FastAPI app serving one model."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from bert4rec import __version__
from bert4rec.api.errors import add_exception_handlers
from bert4rec.api.routes import demo, health, items, recommend, users
from bert4rec.api.settings import ServeSettings
from bert4rec.errors import ConfigError
from bert4rec.inference.recommender import Recommender

DESCRIPTION = """Next-item recommendations from a trained BERT4Rec / SASRec bundle.

Errors: an unknown item or user id answers **404** with `{"detail": "<message naming the id>"}`
(except `user_to_item`, where an unknown user gets popular items, `path: "popularity"`); every
other bad request answers **422** with FastAPI's `{"detail": [{"loc", "msg", "type"}]}`.
"""


def create_app(
    model: Recommender | Path | str | None = None,
    *,
    text_cold_start: bool | None = None,
    settings: ServeSettings | None = None,
) -> FastAPI:
    """Build the API around a Recommender, or load one from a model folder.

    `model=None` takes `BERT4REC_MODEL` from the environment; `text_cold_start` (default
    `BERT4REC_TEXT_COLD_START`, else on exactly when the bundle stores item text vectors) loads
    MiniLM and the item text vectors now, so a broken setup fails at startup rather than on the
    first request. Raises ArtifactError for a missing,
    corrupted or inconsistent model folder.
    """
    settings = settings or ServeSettings()
    if model is None:
        if settings.model is None:
            raise ConfigError("no model to serve: pass a model folder or set BERT4REC_MODEL")
        model = settings.model
    recommender = model if isinstance(model, Recommender) else Recommender.load(model)
    if text_cold_start is None:
        # a bundle with item text vectors (content fusion) serves text queries and new items: its
        # encoder loads now, so a missing `serve` extra fails at startup, not on the first request
        text_cold_start = settings.text_cold_start or recommender.has_text_vectors
    if text_cold_start and recommender.content is None:
        recommender.enable_content()

    app = FastAPI(title="bert4rec", version=__version__, description=DESCRIPTION)
    app.state.recommender = recommender
    add_exception_handlers(app)
    app.include_router(health.router)
    app.include_router(items.router)
    app.include_router(recommend.router)
    app.include_router(users.router)
    app.include_router(demo.router)
    return app
