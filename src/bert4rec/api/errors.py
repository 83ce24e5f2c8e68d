"""Domain errors -> HTTP responses. The contract (also in the README):

404  {"detail": "unknown item id 99999 (not in the 3416 trained items)"}   unknown item / user id
422  {"detail": [{"loc": [...], "msg": "...", "type": "..."}]}            anything else wrong with
     the request: FastAPI's validation format, also used for unknown filter fields, filter values
     of the wrong type and text cold start when it is not enabled. At most MAX_ERRORS entries
     (then one `too_many_errors` entry with the count); `input` is echoed only when it is small (a
     scalar, or a container of at most MAX_ECHOED_ITEMS scalars; larger ones are left out), strings
     in it and in `loc` are cut to MAX_TEXT characters and messages to MAX_MSG, so an error never
     costs more than the request did, and lone surrogates are written as \\udXXX escapes.

Answers made before any route runs (api/middleware.py): 400 bad Host or Content-Length, 401 API key,
413 body too large, 422 NaN / Infinity / lone surrogates in JSON, 503 busy (+ Retry-After), 504 timeout.
503 (+ Retry-After) also when the item index cannot answer (`--index qdrant`: the Qdrant server is
unreachable, or its collection was rebuilt from other vectors).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from bert4rec.api.schemas import FILTER_PREFIX
from bert4rec.errors import (
    ContentUnavailableError,
    FilterError,
    IndexUnavailableError,
    QueryError,
    UnknownIdError,
)

MAX_ERRORS = 20
MAX_TEXT = 200  # echoed input and loc parts
MAX_MSG = 1000  # messages (they may quote the input, e.g. an unknown query_type)
MAX_ECHOED_ITEMS = 10


def _text(value: str, limit: int = MAX_TEXT) -> str:
    """Cut to `limit` characters; lone surrogates written as \\udXXX so the answer encodes as UTF-8."""
    if len(value) > limit:
        value = f"{value[:limit]}... ({len(value)} characters)"
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _safe(value: Any) -> Any:
    """`value` in a form JSON can carry: non-finite floats as text, strings cut and escaped."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(str(k)): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return value


def _echoable(value: Any) -> bool:
    """Small enough to send back: a scalar, or a short container of scalars."""
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple | dict) and len(value) <= MAX_ECHOED_ITEMS:
        items = value.values() if isinstance(value, dict) else value
        return all(v is None or isinstance(v, bool | int | float | str) for v in items)
    return False


def validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic's errors in FastAPI's shape, bounded: see the module docstring."""
    out: list[dict[str, Any]] = []
    for error in errors[:MAX_ERRORS]:
        entry: dict[str, Any] = {
            "type": error.get("type", "value_error"),
            "loc": [_safe(part) for part in error.get("loc", ())],
            "msg": _text(str(error.get("msg", "")), MAX_MSG),
        }
        if "input" in error and _echoable(error["input"]):
            entry["input"] = _safe(error["input"])
        if error.get("ctx"):
            entry["ctx"] = _safe(jsonable_encoder(error["ctx"], custom_encoder={Exception: str}))
        out.append(entry)
    if len(errors) > MAX_ERRORS:
        more = len(errors) - MAX_ERRORS
        out.append({"type": "too_many_errors", "loc": ["body"], "msg": f"and {more} more errors"})
    return out


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": validation_errors(list(exc.errors()))})


def _unprocessable(loc: list[str], msg: str, kind: str) -> JSONResponse:
    detail: list[dict[str, Any]] = [{"loc": _safe(loc), "msg": _text(msg, MAX_MSG), "type": kind}]
    return JSONResponse(status_code=422, content={"detail": detail})


async def unknown_id(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": _text(str(exc), MAX_MSG)})


async def bad_filter(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FilterError)
    key = FILTER_PREFIX + exc.field
    if exc.field not in exc.valid:
        valid = ", ".join(FILTER_PREFIX + f for f in exc.valid) or "none (this model has no item metadata)"
        return _unprocessable(
            ["body", "filters", key], f"unknown filter field {key!r}; valid fields: {valid}", "unknown_filter"
        )
    msg = str(exc).replace(repr(exc.field), repr(key), 1)
    return _unprocessable(["body", "filters", key], msg, "filter_value")


async def bad_query(request: Request, exc: Exception) -> JSONResponse:
    return _unprocessable(["body"], str(exc), "query")


async def no_content(request: Request, exc: Exception) -> JSONResponse:
    return _unprocessable(["body", "item_text"], str(exc), "text_cold_start_disabled")


async def index_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # the server is fine, its vector database is not: try again later (or another replica)
    return JSONResponse(
        status_code=503, content={"detail": _text(str(exc), MAX_MSG)}, headers={"Retry-After": "1"}
    )


def add_exception_handlers(app: FastAPI) -> None:
    """Register the handlers; the most specific class first (FilterError is a QueryError)."""
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(UnknownIdError, unknown_id)
    app.add_exception_handler(FilterError, bad_filter)
    app.add_exception_handler(QueryError, bad_query)
    app.add_exception_handler(ContentUnavailableError, no_content)
    app.add_exception_handler(IndexUnavailableError, index_unavailable)
