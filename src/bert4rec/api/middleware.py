"""ASGI middleware that keeps the server up under hostile input and overload (issue 15).

Order, outermost first (`install_middleware`): security headers -> trusted hosts -> CORS (when
configured) -> API key (when configured) -> concurrency limit -> request timeout -> request body
(size limit and strict JSON), so a request is refused as early and as cheaply as possible.

All of them are plain ASGI callables (no BaseHTTPMiddleware): they add no task per request and
their early answers (401, 413, 422, 503, 504) never touch the route, the threadpool or pydantic.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_KEY_HEADER = "X-API-Key"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# parse bodies bigger than this in a worker thread, so a 1 MB body does not stall the event loop
THREAD_PARSE_BYTES = 64 * 1024
# OWASP's REST headers: nothing in an API answer may run, be framed, be sniffed into HTML or be cached
API_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
)


def json_error(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's error shape, `{"detail": ...}`, for answers made before any route runs."""
    return JSONResponse(status_code=status, content={"detail": detail}, headers=headers)


# ---------------------------------------------------------------- security headers
class SecurityHeaders:
    """Adds `API_HEADERS` to every response that did not set its own (HTML pages set their CSP)."""

    def __init__(self, app: ASGIApp, *, cacheable_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.cacheable_prefixes = cacheable_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope["path"].startswith(self.cacheable_prefixes) if self.cacheable_prefixes else False

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in API_HEADERS:
                    if name not in present and not (cacheable and name == b"cache-control"):
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def content_security_policy(html: str, *, inline_styles: bool = False, workers: bool = False) -> str:
    """A CSP for one of our HTML pages: its own inline <script>/<style> blocks (by sha256) and files
    from this server, nothing from elsewhere. `inline_styles` allows style elements the page's
    script adds at run time (ReDoc); `workers` allows blob: workers (ReDoc's search)."""

    def hashes(tag: str) -> list[str]:
        pattern = rf"<{tag}(?![^>]*\bsrc=)[^>]*>(.*?)</{tag}>"
        return [
            "'sha256-" + base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode() + "'"
            for body in re.findall(pattern, html, flags=re.DOTALL | re.IGNORECASE)
        ]

    styles = ["'self'", "'unsafe-inline'"] if inline_styles else ["'self'", *hashes("style")]
    directives = [
        "default-src 'none'",
        "script-src " + " ".join(["'self'", *hashes("script")]),
        "style-src " + " ".join(styles),
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
    if workers:
        directives.append("worker-src blob:")
    return "; ".join(directives)


# ---------------------------------------------------------------- API key
class APIKeyGuard:
    """Requests that `is_public(method, path)` does not cover must carry the key in X-API-Key.

    The key is compared as sha256 digests with `hmac.compare_digest`: constant time, and the
    length of the key does not leak either."""

    def __init__(self, app: ASGIApp, *, api_key: str, is_public: Callable[[str, str], bool]) -> None:
        self.app = app
        self.digest = hashlib.sha256(api_key.encode("utf-8")).digest()
        self.is_public = is_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "")
        if scope["type"] != "http" or method == "OPTIONS" or self.is_public(method, scope["path"]):
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(API_KEY_HEADER)
        if given is None:
            detail = f"this route needs the API key in the {API_KEY_HEADER} header"
        elif not hmac.compare_digest(hashlib.sha256(given.encode("latin-1")).digest(), self.digest):
            detail = f"wrong API key in the {API_KEY_HEADER} header"
        else:
            await self.app(scope, receive, send)
            return
        challenge = {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}
        await json_error(401, detail, challenge)(scope, receive, send)


# ---------------------------------------------------------------- overload
class ConcurrencyLimit:
    """At most `limit` requests in progress; the next one gets 503 + Retry-After at once, so that
    an overloaded server sheds load instead of queueing it without bound. Paths in `exempt` (the
    health check) are always served, so that monitoring sees a busy server as alive."""

    def __init__(
        self, app: ASGIApp, *, limit: int, retry_after_s: int = 1, exempt: Iterable[str] = ("/health",)
    ) -> None:
        self.app = app
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.exempt = frozenset(exempt)
        self.in_flight = 0  # one event loop: no lock needed between the check and the increment

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            detail = (
                f"server busy: {self.in_flight} requests in progress (limit {self.limit}, "
                f"--max-concurrency); retry in {self.retry_after_s} s"
            )
            await json_error(503, detail, {"Retry-After": str(self.retry_after_s)})(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class RequestTimeout:
    """Answers 504 when a request has not started its response after `seconds`.

    A watchdog task sends the 504 and cancels the request: waiting for the body or for a worker
    thread stops at once; a route already running in a worker thread cannot be interrupted, so it
    runs to its end and its response is dropped (its concurrency slot is held until then, which is
    the honest count of busy workers)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        seconds: float,
        slow: Callable[[str, str], bool] | None = None,
        slow_seconds: float | None = None,
    ) -> None:
        """`slow(method, path)` marks the requests that get `slow_seconds` instead (None: no limit):
        the writes that load a model or rebuild the served state."""
        self.app = app
        self.seconds = seconds
        self.slow = slow
        self.slow_seconds = slow_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, option = self.seconds, "--request-timeout"
        if self.slow is not None and self.slow(scope["method"], scope["path"]):
            if self.slow_seconds is None:
                await self.app(scope, receive, send)
                return
            limit, option = self.slow_seconds, "BERT4REC_SLOW_REQUEST_TIMEOUT"
        started = timed_out = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async with anyio.create_task_group() as group:

            async def watchdog() -> None:
                nonlocal timed_out
                await anyio.sleep(limit)
                if started:
                    return
                timed_out = True
                detail = f"the request took longer than {limit:g} s ({option}); abandoned"
                await json_error(504, detail)(scope, receive, send)
                group.cancel_scope.cancel()

            group.start_soon(watchdog)
            await self.app(scope, receive, guarded_send)
            group.cancel_scope.cancel()


# ---------------------------------------------------------------- request bodies
class _NonFinite(float):
    """What the strict parser puts where JSON had NaN / Infinity (found afterwards, with its path)."""


def _first(obj: Any, hit: Callable[[Any], bool], loc: tuple[Any, ...] = ("body",)) -> tuple[Any, ...] | None:
    """The loc of the first value (or dict key) in `obj` for which `hit` is true."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(obj, loc)]
    while stack:
        value, where = stack.pop()
        if hit(value):
            return where
        if isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                if hit(key):
                    return (*where, key)
                stack.append((item, (*where, key)))
        elif isinstance(value, list):
            stack.extend((item, (*where, i)) for i, item in reversed(list(enumerate(value))))
    return None


def _has_surrogate(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _escaped(value: Any) -> Any:
    """A loc part that JSON can carry: lone surrogates written as \\udXXX."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


def json_body_problem(body: bytes) -> dict[str, Any] | None:
    """A 422 error entry when `body` is JSON that Python's parser accepts but JSON does not allow
    (NaN, Infinity) or that decodes to a string no UTF-8 response could carry (a lone UTF-16
    surrogate such as "\\ud800"); None when it is fine, or so broken that the route's own parser
    answers it (syntax errors, bad UTF-8)."""
    # fast path: each fault needs one of these bytes; ordinary bodies are only scanned, never parsed
    # here. json.loads (as Starlette calls it) decodes with "surrogatepass", so a surrogate can also
    # come raw (UTF-8 bytes ED A0..BF), and UTF-16/32 bodies (with NUL bytes) hide both from a scan.
    suspicious = (
        b"NaN" in body
        or b"Infinity" in body
        or b"\x00" in body
        or re.search(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]", body) is not None
    )
    if not suspicious:
        return None
    try:
        parsed = json.loads(body, parse_constant=lambda name: _NonFinite(name.replace("Infinity", "inf")))
    except (ValueError, RecursionError):
        return None
    where = _first(parsed, lambda v: isinstance(v, _NonFinite))
    if where is not None:
        return {
            "type": "finite_number",
            "loc": [_escaped(part) for part in where],
            "msg": "NaN and Infinity are not valid JSON: numbers must be finite",
        }
    where = _first(parsed, _has_surrogate)
    if where is not None:
        return {
            "type": "string_unicode",
            "loc": [_escaped(part) for part in where],
            "msg": "string contains a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape); "
            "send valid Unicode",
        }
    return None


class RequestBody:
    """Reads request bodies before the route does. A body over `max_bytes` is answered 413 without
    reading the rest: at once when its Content-Length says so, else as soon as the streamed bytes
    (chunked uploads) pass the limit. A JSON body with NaN / Infinity or a lone surrogate gets 422,
    so no route or error handler ever sees one. The route then reads the buffered body.

    (FastAPI's own `max_body_size` is not used: when Content-Length is over its limit it answers
    in plain text and replaces any JSON answer made here.)"""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                detail = f"invalid Content-Length header {declared[:40]!r}"
                await json_error(400, detail)(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self.too_large(scope, receive, send)
                return
        if scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)  # no route reads a GET body; Content-Length was checked
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client is gone: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self.too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and _is_json(scope):
            if len(body) > THREAD_PARSE_BYTES:
                problem = await anyio.to_thread.run_sync(json_body_problem, body)
            else:
                problem = json_body_problem(body)
            if problem is not None:
                await json_error(422, [problem])(scope, receive, send)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)

    async def too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body too large: the limit is {self.max_bytes} bytes (--max-body-bytes)"
        # close the connection: the rest of the body is never read
        await json_error(413, detail, {"Connection": "close"})(scope, receive, send)


def _is_json(scope: Scope) -> bool:
    media = Headers(scope=scope).get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


# ---------------------------------------------------------------- wiring
def install_middleware(
    app: FastAPI,
    *,
    max_body_bytes: int,
    max_concurrency: int | None,
    retry_after_s: int,
    request_timeout: float | None,
    api_key: str | None,
    is_public: Callable[[str, str], bool],
    allowed_hosts: list[str],
    cors_origins: list[str],
    cacheable_prefixes: tuple[str, ...] = (),
    slow: Callable[[str, str], bool] | None = None,
    slow_timeout: float | None = None,
) -> None:
    """Add the middleware in the order described at the top (add_middleware puts each new one outside).
    `slow(method, path)`: the requests that get `slow_timeout` instead of `request_timeout`."""
    app.add_middleware(RequestBody, max_bytes=max_body_bytes)
    if request_timeout is not None:
        app.add_middleware(RequestTimeout, seconds=request_timeout, slow=slow, slow_seconds=slow_timeout)
    if max_concurrency is not None:
        app.add_middleware(ConcurrencyLimit, limit=max_concurrency, retry_after_s=retry_after_s)
    if api_key is not None:
        app.add_middleware(APIKeyGuard, api_key=api_key, is_public=is_public)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["content-type", API_KEY_HEADER.lower()],
            allow_credentials=False,
            max_age=600,
        )
    if allowed_hosts != ["*"]:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.add_middleware(SecurityHeaders, cacheable_prefixes=cacheable_prefixes)
