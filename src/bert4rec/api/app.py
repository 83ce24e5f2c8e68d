"""The app factory: `create_app(path_or_recommender)` -> a FastAPI app serving one model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from bert4rec import __version__
from bert4rec.api.deps import freeze_heap, load_served
from bert4rec.api.errors import add_exception_handlers
from bert4rec.api.middleware import API_KEY_HEADER, install_middleware
from bert4rec.api.routes import demo, health, items, recommend, users
from bert4rec.api.routes import jobs as job_routes
from bert4rec.api.routes.docs import DOCS_STATIC, add_docs
from bert4rec.api.settings import ServeSettings
from bert4rec.errors import ArtifactError, ConfigError
from bert4rec.inference.recommender import Recommender
from bert4rec.jobs import JobStore

logger = logging.getLogger(__name__)

DESCRIPTION = """Next-item recommendations from a trained BERT4Rec / SASRec bundle.

Errors: an unknown item or user id answers **404** with `{"detail": "<message naming the id>"}`
(except `user_to_item`, where an unknown user gets popular items, `path: "popularity"`); every
other bad request answers **422** with FastAPI's `{"detail": [{"loc", "msg", "type"}]}`.

Limits: a body over the server's limit answers **413**; a busy server **503** with `Retry-After`;
a request over the time limit **504**. When the server has an API key, every route except the
public read-only ones (`GET /health`, `GET /items`, `POST /recommend`, the web pages) needs it in
the `X-API-Key` header (else **401**).
"""

# Routes anyone may call even when the server has an API key: the read-only product surface.
# Everything else (user histories, and whatever writes) needs the key: deny by default.
PUBLIC_GET = frozenset({"/", "/health", "/demo", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
PUBLIC_GET_PREFIXES = ("/items/", DOCS_STATIC + "/")
PUBLIC_POST = frozenset({"/recommend"})


def is_slow(method: str, path: str) -> bool:
    """The writes that load a model or rebuild the served state (`ServeSettings.slow_request_timeout`)."""
    if method == "POST":
        return path in ("/model", "/jobs")
    return method in ("PUT", "DELETE") and path.startswith("/items/")


def is_public(method: str, path: str) -> bool:
    """Whether `method path` is served without the API key (see PUBLIC_GET)."""
    if method in ("GET", "HEAD"):
        return path in PUBLIC_GET or path == "/items" or path.startswith(PUBLIC_GET_PREFIXES)
    return method == "POST" and path in PUBLIC_POST


def create_app(
    model: Recommender | Path | str | None = None,
    *,
    text_cold_start: bool | None = None,
    settings: ServeSettings | None = None,
    jobs: JobStore | Path | str | None = None,
) -> FastAPI:
    """Build the API around a Recommender, or load one from a model folder.

    `model=None` takes `BERT4REC_MODEL` from the environment; `text_cold_start` (default
    `BERT4REC_TEXT_COLD_START`, else on exactly when the bundle stores item text vectors) loads
    MiniLM and the item text vectors now, so a broken setup fails at startup rather than on the
    first request. Raises ArtifactError for a missing,
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
        recommender = load_served(model, settings)
    if text_cold_start is None:
        # a bundle with item text vectors (content fusion) serves text queries and new items: its
        # encoder loads now, so a missing `serve` extra fails at startup, not on the first request
        text_cold_start = settings.text_cold_start or recommender.has_text_vectors
    if text_cold_start and recommender.content is None:
        recommender.enable_content()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.gc_freeze:  # in the server process, once everything long-lived is loaded
            freeze_heap()
        every = settings.catalog_sync_s
        sync = asyncio.create_task(sync_catalog(app, every)) if every else None
        yield
        if sync is not None:
            sync.cancel()

    app = FastAPI(
        title="bert4rec",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.recommender = recommender
    app.state.settings = settings
    add_exception_handlers(app)
    api_key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    install_middleware(
        app,
        max_body_bytes=settings.max_body_bytes,
        max_concurrency=settings.max_concurrency,
        retry_after_s=settings.retry_after_s,
        request_timeout=settings.request_timeout,
        api_key=api_key,
        is_public=is_public,
        allowed_hosts=settings.allowed_hosts,
        cors_origins=settings.cors_origins,
        cacheable_prefixes=(DOCS_STATIC + "/",),
        slow=is_slow,
        slow_timeout=settings.slow_request_timeout,
    )
    add_docs(app)
    if api_key is not None:
        _document_api_key(app)
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


async def sync_catalog(app: FastAPI, every_s: float) -> None:
    """Serve the catalogue versions other processes save (the other workers of `serve --workers`,
    `bert4rec items add` beside the server): every `every_s` seconds, one directory listing, and a
    rebuild of the served state in a thread when there is a newer version. A file that does not fit
    the model is logged once and skipped; the current version stays served."""
    failed: set[int] = set()
    while True:
        await asyncio.sleep(every_s)
        rec: Recommender = app.state.recommender  # read each time: POST /model may swap it
        try:
            await asyncio.to_thread(rec.refresh_catalog)
        except ArtifactError as err:
            version = rec.store.newest() if rec.store is not None else -1
            if version not in failed:
                failed.add(version)
                logger.warning("not serving catalogue version %s: %s", version, err)


def _document_api_key(app: FastAPI) -> None:
    """Mark the routes that need the key in the OpenAPI schema (Swagger UI's Authorize button)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "APIKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}
            }
            for path, operations in schema.get("paths", {}).items():
                for method, operation in operations.items():
                    if not is_public(method.upper(), path):
                        operation["security"] = [{"APIKey": []}]
                        responses = operation.setdefault("responses", {})
                        responses["401"] = {"description": "Missing or wrong API key."}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
