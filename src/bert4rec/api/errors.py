"""Domain errors -> HTTP responses. The contract (also in the README):

404  {"detail": "unknown item id 99999 (not in the 3416 trained items)"}   unknown item / user id
422  {"detail": [{"loc": [...], "msg": "...", "type": "..."}]}            anything else wrong with
     the request: FastAPI's validation format, also used for unknown filter fields, filter values
     of the wrong type and text cold start when it is not enabled.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bert4rec.api.schemas import FILTER_PREFIX
from bert4rec.errors import ContentUnavailableError, FilterError, QueryError, UnknownIdError


def _unprocessable(loc: list[str], msg: str, kind: str) -> JSONResponse:
    detail: list[dict[str, Any]] = [{"loc": loc, "msg": msg, "type": kind}]
    return JSONResponse(status_code=422, content={"detail": detail})


async def unknown_id(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(exc)})


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


def add_exception_handlers(app: FastAPI) -> None:
    """Register the handlers; the most specific class first (FilterError is a QueryError)."""
    app.add_exception_handler(UnknownIdError, unknown_id)
    app.add_exception_handler(FilterError, bad_filter)
    app.add_exception_handler(QueryError, bad_query)
    app.add_exception_handler(ContentUnavailableError, no_content)
