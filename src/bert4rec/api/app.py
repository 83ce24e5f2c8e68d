"""The app factory: `create_app(path_or_recommender)` -> a FastAPI app serving one model."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from bert4rec import __version__
from bert4rec.api.errors import add_exception_handlers
from bert4rec.api.routes import demo, health, items, recommend, users
from bert4rec.api.routes import jobs as job_routes
from bert4rec.api.settings import ServeSettings
from bert4rec.errors import ConfigError
from bert4rec.inference.recommender import Recommender
from bert4rec.jobs import JobStore

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
    jobs: JobStore | Path | str | None = None,
) -> FastAPI:
    """Build the API around a Recommender, or load one from a model folder.

    `model=None` takes `BERT4REC_MODEL` from the environment; `text_cold_start` (default
    `BERT4REC_TEXT_COLD_START`, off) loads MiniLM and the item text vectors now, so a broken setup
    fails at startup rather than on the first request. Raises ArtifactError for a missing,
    corrupted or inconsistent model folder.
    `jobs` (a JobStore or its folder; default `BERT4REC_JOBS_DIR`) adds the training-job routes
    (/jobs, POST /model); without it they do not exist.
    """
    settings = settings or ServeSettings()
    if model is None:
        if settings.model is None:
            raise ConfigError("no model to serve: pass a model folder or set BERT4REC_MODEL")
        model = settings.model
    if isinstance(model, Recommender):
        recommender = model
    else:
        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        options = {"index": settings.index, "index_threshold": settings.index_threshold}
        recommender = Recommender.load(
            model,
            backend=settings.backend,
            threads=settings.torch_threads or 1,
            intents_cache=settings.intents_cache,
            **options,
        )
    if text_cold_start is None:
        text_cold_start = settings.text_cold_start
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
    jobs = jobs if jobs is not None else settings.jobs_dir
    if jobs is not None:  # opt-in: these routes start processes and swap the served model
        if not isinstance(jobs, JobStore):
            jobs = JobStore(jobs, max_running=settings.max_jobs, max_queued=settings.max_queued_jobs)
        app.state.jobs = jobs
        app.include_router(job_routes.router)
    return app
