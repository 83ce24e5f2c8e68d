"""Issue 15, HTTP side: hostile bodies, overload, hostile ids and deployment settings.

Each class of fault is answered before it reaches a route: 413 for a body over the limit (by its
Content-Length or counted as it streams), 422 for JSON that Python parses but JSON forbids (NaN,
Infinity) or that holds a lone UTF-16 surrogate, 503 + Retry-After past the concurrency limit, 504
past the request timeout, 401 without the API key, 400 for an unknown Host.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading

import anyio
import pytest
from fastapi.testclient import TestClient

from bert4rec.api import create_app
from bert4rec.api.errors import MAX_ERRORS, validation_errors
from bert4rec.api.settings import ServeSettings

KEY = "k" * 8 + "-test-key-0123456789"


def make_client(rec, **settings) -> TestClient:
    return TestClient(create_app(rec, settings=ServeSettings(**settings)))


# ---------------------------------------------------------------- 1. request size and parsing
def test_a_body_over_the_limit_is_413_by_its_content_length(api_rec):
    with make_client(api_rec, max_body_bytes=1000) as client:
        body = json.dumps({"query_type": "sequential", "item_ids": [1] * 600}).encode()
        assert len(body) > 1000
        response = client.post("/recommend", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert response.json() == {
            "detail": "request body too large: the limit is 1000 bytes (--max-body-bytes)"
        }
        ok = client.post("/recommend", json={"query_type": "sequential", "item_ids": [1, 2]})
        assert ok.status_code == 200


def test_a_chunked_body_is_counted_as_it_streams_and_never_read_to_the_end(api_rec):
    """No Content-Length and an endless body: 413 after reading just past the limit."""
    app = create_app(api_rec, settings=ServeSettings(max_body_bytes=100_000))
    chunk = b" " * 10_000
    received = 0
    sent: list[dict] = []

    async def receive():
        nonlocal received
        received += 1
        return {"type": "http.request", "body": chunk, "more_body": True}  # never ends

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/recommend",
        "raw_path": b"/recommend",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "state": {},
    }
    anyio.run(app, scope, receive, send)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert json.loads(sent[1]["body"]) == {
        "detail": "request body too large: the limit is 100000 bytes (--max-body-bytes)"
    }
    assert received == 11  # 10 chunks fill the limit, the 11th passes it: nothing more is read


def test_a_chunked_body_over_the_limit_over_http_is_413(api_rec):
    def chunks():
        for _ in range(30):
            yield b"[" * 100

    with make_client(api_rec, max_body_bytes=1000) as client:
        response = client.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "the limit is 1000 bytes" in response.json()["detail"]


def test_a_bad_content_length_is_400(api_rec):
    app = create_app(api_rec)
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/recommend",
        "raw_path": b"/recommend",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-length", b"12abc")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "scheme": "http",
        "http_version": "1.1",
        "state": {},
    }
    anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"]) == {"detail": "invalid Content-Length header '12abc'"}


def test_422_details_never_echo_large_inputs(client):
    response = client.post("/recommend", json={"query_type": "sequential", "item_ids": list(range(10_001))})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["type"] == "too_long" and "input" not in error  # the 10,001 ids are not sent back
    assert len(response.content) < 500

    text = "x" * 5000
    response = client.post("/recommend", json={"query_type": "item_to_item", "item_text": text})
    error = response.json()["detail"][0]
    assert error["type"] == "string_too_long"
    assert error["input"] == "x" * 200 + "... (5000 characters)"

    tag = "q" * 50_000  # pydantic quotes an unknown tag in its message
    response = client.post("/recommend", json={"query_type": tag, "user_id": 1})
    error = response.json()["detail"][0]
    assert error["type"] == "union_tag_invalid"
    assert error["msg"].startswith("Input tag 'qqq") and re.search(
        r"\.\.\. \(5\d{4} characters\)$", error["msg"]
    )
    assert len(error["msg"]) < 1100 and len(response.content) < 2000
    assert "input" not in error or len(json.dumps(error["input"])) < 500


def test_422_lists_at_most_max_errors_and_counts_the_rest(client):
    body = {"query_type": "sequential", "item_ids": ["x" * 300] * 2000}  # 2 errors per id
    response = client.post("/recommend", json=body)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert len(errors) == MAX_ERRORS + 1
    assert errors[-1] == {
        "type": "too_many_errors",
        "loc": ["body"],
        "msg": f"and {4000 - MAX_ERRORS} more errors",
    }
    assert len(response.content) < 20_000


# ---------------------------------------------------------------- 2. never a 500 for bad input
@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        ('{"query_type": "user_to_item", "user_id": 1, "top_k": NaN}', ["body", "top_k"]),
        ('{"query_type": "user_to_item", "user_id": Infinity}', ["body", "user_id"]),
        ('{"query_type": "sequential", "item_ids": [1, 2, -Infinity]}', ["body", "item_ids", 2]),
        (
            '{"query_type": "user_to_item", "user_id": 1, "filters": {"meta.year": [1990, NaN]}}',
            ["body", "filters", "meta.year", 1],
        ),
    ],
)
def test_nan_and_infinity_are_422_with_where(client, raw, loc):
    response = client.post("/recommend", content=raw.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json() == {
        "detail": [
            {
                "type": "finite_number",
                "loc": loc,
                "msg": "NaN and Infinity are not valid JSON: numbers must be finite",
            }
        ]
    }


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        (r'{"query_type": "user_to_item", "user_id": "\ud800"}', ["body", "user_id"]),
        (r'{"query_type": "sequential", "item_ids": [1, "a\udfffb"]}', ["body", "item_ids", 1]),
        (
            r'{"query_type": "user_to_item", "user_id": 1, "filters": {"meta.\udc00": "x"}}',
            ["body", "filters", r"meta.\udc00"],
        ),
        (r'{"query_type": "item_to_item", "item_text": "\ud83d"}', ["body", "item_text"]),
    ],
)
def test_lone_surrogates_are_422_with_where(client, raw, loc):
    response = client.post("/recommend", content=raw.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert (error["type"], error["loc"]) == ("string_unicode", loc)
    assert "lone UTF-16 surrogate" in error["msg"]


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        # a surrogate as raw UTF-8 bytes: Python's json.loads decodes them ("surrogatepass")
        (b'{"query_type": "user_to_item", "user_id": "\xed\xa0\x80"}', "string_unicode"),
        ('{"query_type": "user_to_item", "user_id": 1, "top_k": NaN}'.encode("utf-16"), "finite_number"),
        ('{"query_type": "user_to_item", "user_id": "\\udc00"}'.encode("utf-32"), "string_unicode"),
    ],
    ids=["raw-utf8-surrogate", "utf16-nan", "utf32-surrogate"],
)
def test_faults_hidden_from_a_byte_scan_are_still_422(client, body, kind):
    response = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == kind


def test_a_surrogate_pair_and_text_that_merely_says_nan_are_fine(client):
    raw = r'{"query_type": "user_to_item", "user_id": "\ud83d\ude00 NaN Infinity"}'
    response = client.post("/recommend", content=raw.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text  # an unknown user: popular items
    assert response.json()["path"] == "popularity"


def test_the_422_handler_itself_can_encode_any_pydantic_error():
    """Defence in depth: even errors that carry NaN or a lone surrogate serialise as strict JSON."""
    errors = [
        {
            "type": "int_type",
            "loc": ("body", "top_k"),
            "msg": "Input should be a valid integer",
            "input": float("nan"),
        },
        {
            "type": "x",
            "loc": ("body", "\ud800"),
            "msg": "bad '\ud800'",
            "input": "\udfff",
            "ctx": {"error": ValueError("v")},
        },
    ]
    out = validation_errors(errors)
    text = json.dumps(out, allow_nan=False, ensure_ascii=False).encode("utf-8")
    assert json.loads(text)[0]["input"] == "nan"
    assert out[1]["loc"] == ["body", "\\ud800"] and out[1]["ctx"] == {"error": "v"}


def test_query_parameters_that_are_not_numbers_are_422(client):
    for bad in ("NaN", "Infinity", "1e400"):
        response = client.get("/items", params={"limit": bad})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "limit"]


# ---------------------------------------------------------------- 8. hostile ids


def test_demo_bootstrap_is_safe_for_any_id(hostile_rec, monkeypatch):
    import bert4rec.api.routes.demo as demo

    monkeypatch.setattr(demo, "SAMPLE_USERS", len(hostile_rec.vocab.user_ids))  # every id on the page
    with TestClient(create_app(hostile_rec)) as client:
        response = client.get("/demo")
    html = response.text
    script = re.search(r"<script>(.*?)</script>", html, flags=re.DOTALL).group(1)
    assert html.count("</script>") == 1 and "<!--" not in script and "<script" not in script
    data = json.loads(re.search(r"const DEMO = (\{.*?\});\n", script).group(1))
    assert data["sample_users"] == hostile_rec.vocab.user_ids  # the same ids, read back exactly
    # the page's CSP allows exactly this script (by hash) and nothing from elsewhere
    digest = __import__("base64").b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = response.headers["content-security-policy"]
    assert f"'sha256-{digest}'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp


@pytest.mark.parametrize("user", ["a/b", "c/../d", "user/7", "<!--<script>"])
def test_user_ids_with_slashes_are_reachable(hostile_rec, user):
    from urllib.parse import quote

    with TestClient(create_app(hostile_rec)) as client:
        response = client.get("/users/" + quote(user, safe=""))  # as the demo page sends it
        assert response.status_code == 200, response.text
        assert response.json()["user_id"] == user
        assert response.json()["history_length"] == len(hostile_rec.history(user))
        missing = client.get("/users/" + quote("no/such/user", safe=""))
    assert missing.status_code == 404 and "'no/such/user'" in missing.json()["detail"]


# ---------------------------------------------------------------- 9. overload
def blocking_route(app):
    """A GET /block route that waits (in the threadpool, like every route) until released."""
    entered, release = threading.Event(), threading.Event()

    def block() -> dict:
        entered.set()
        release.wait(10)
        return {"released": True}

    app.add_api_route("/block", block)
    return entered, release


def test_past_the_concurrency_limit_requests_get_503_with_retry_after(api_rec):
    app = create_app(
        api_rec, settings=ServeSettings(max_concurrency=1, retry_after_s=3, request_timeout=None)
    )
    entered, release = blocking_route(app)
    with TestClient(app) as client:
        results: list = []
        worker = threading.Thread(target=lambda: results.append(client.get("/block")))
        worker.start()
        try:
            assert entered.wait(10)
            busy = client.post("/recommend", json={"query_type": "sequential", "item_ids": [1]})
            assert busy.status_code == 503
            assert busy.headers["retry-after"] == "3"
            assert busy.json() == {
                "detail": "server busy: 1 requests in progress (limit 1, --max-concurrency); retry in 3 s"
            }
            assert client.get("/health").status_code == 200  # the health check is never shed
        finally:
            release.set()
            worker.join(10)
        assert results[0].json() == {"released": True}
        again = client.post("/recommend", json={"query_type": "sequential", "item_ids": [1]})
        assert again.status_code == 200


def test_a_request_past_the_timeout_is_504_and_the_server_goes_on(api_rec):
    app = create_app(api_rec, settings=ServeSettings(request_timeout=0.2, max_concurrency=None))
    entered, release = blocking_route(app)
    with TestClient(app) as client:
        try:
            response = client.get("/block")
            assert response.status_code == 504
            assert response.json() == {
                "detail": "the request took longer than 0.2 s (--request-timeout); abandoned"
            }
            assert entered.is_set()
        finally:
            release.set()
        assert client.get("/health").status_code == 200


# ---------------------------------------------------------------- 10. deployment hygiene
def test_api_key_guards_user_histories_but_not_the_public_routes(api_rec):
    user = api_rec.vocab.user_ids[3]
    with make_client(api_rec, api_key=KEY) as client:
        missing = client.get(f"/users/{user}")
        assert missing.status_code == 401
        assert missing.json() == {"detail": "this route needs the API key in the X-API-Key header"}
        assert missing.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
        wrong = client.get(f"/users/{user}", headers={"X-API-Key": KEY[:-1] + "x"})
        assert wrong.status_code == 401 and wrong.json() == {
            "detail": "wrong API key in the X-API-Key header"
        }
        assert client.get(f"/users/{user}", headers={"X-API-Key": KEY}).status_code == 200
        # writing routes (any method but GET/HEAD outside the public list) need it too, even unknown ones
        assert client.post("/items", json={}).status_code == 401
        assert client.delete("/recommend").status_code == 401
        for path in (
            "/health",
            "/items",
            f"/items/{api_rec.vocab.item_ids[0]}",
            "/demo",
            "/docs",
            "/openapi.json",
        ):
            assert client.get(path).status_code == 200, path
        public = client.post("/recommend", json={"query_type": "sequential", "item_ids": [1]})
        assert public.status_code == 200
        schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"] == {
        "APIKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    }
    assert schema["paths"]["/users/{user_id}"]["get"]["security"] == [{"APIKey": []}]
    assert "security" not in schema["paths"]["/recommend"]["post"]


def test_without_a_key_everything_is_open(client, api_rec):
    assert client.get(f"/users/{api_rec.vocab.user_ids[3]}").status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


@pytest.mark.parametrize("bad", ["short", " " * 40])
def test_a_short_api_key_is_refused_with_how_to_make_one(bad):
    with pytest.raises(ValueError, match="the API key must have at least 16 characters"):
        ServeSettings(api_key=bad)


def test_trusted_hosts(api_rec):
    with make_client(api_rec, allowed_hosts=["api.example.com", "*.internal"]) as client:
        assert client.get("/health", headers={"host": "api.example.com"}).status_code == 200
        assert client.get("/health", headers={"host": "a.internal"}).status_code == 200
        evil = client.get("/health", headers={"host": "evil.example"})
    assert evil.status_code == 400 and evil.text == "Invalid host header"
    assert evil.headers["x-content-type-options"] == "nosniff"


def test_settings_read_lists_from_comma_separated_env(monkeypatch):
    monkeypatch.setenv("BERT4REC_ALLOWED_HOSTS", "a.example, b.example")
    monkeypatch.setenv("BERT4REC_CORS_ORIGINS", "https://shop.example")
    monkeypatch.setenv("BERT4REC_MAX_CONCURRENCY", "0")
    settings = ServeSettings()
    assert settings.allowed_hosts == ["a.example", "b.example"]
    assert settings.cors_origins == ["https://shop.example"]
    assert settings.max_concurrency is None


def test_cors_is_off_by_default_and_on_when_configured(client, api_rec):
    preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    response = client.get("/health", headers={"Origin": "https://shop.example"})
    assert "access-control-allow-origin" not in response.headers
    assert client.options("/recommend", headers=preflight).status_code == 405
    with make_client(api_rec, cors_origins=["https://shop.example"]) as cors:
        allowed = cors.get("/health", headers={"Origin": "https://shop.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
        assert "access-control-allow-credentials" not in allowed.headers
        ok = cors.options("/recommend", headers=preflight)
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://shop.example"
        other = cors.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_security_headers_on_every_answer(client):
    for response in (
        client.get("/health"),
        client.post("/recommend", json={"query_type": "nope"}),
        client.get("/users/nobody"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_load_nothing_from_another_host(client, page):
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), html
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert assets and all(a.startswith("/docs-static/") for a in assets)
    for asset in assets:
        fetched = client.get(asset)
        assert fetched.status_code == 200 and len(fetched.content) > 500, asset
        assert "cache-control" not in fetched.headers  # static files may be cached
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "https:" not in csp and "cdn" not in csp
    if page == "/docs":
        assert '"validatorUrl": null' in html  # Swagger UI would otherwise call validator.swagger.io


def test_item_ids_with_slashes_reach_the_item_route(client, api_rec):
    response = client.get("/items/" + "a%2Fb")  # an encoded slash, as encodeURIComponent sends it
    assert response.status_code == 404
    assert response.json() == {
        "detail": f"unknown item id 'a/b' (not in the {api_rec.vocab.n_items} trained items)"
    }
    assert client.get(f"/items/{api_rec.vocab.item_ids[0]}").status_code == 200


def test_api_key_guards_the_job_routes(api_rec, tmp_path):
    from bert4rec.jobs import JobStore

    app = create_app(api_rec, settings=ServeSettings(api_key=KEY), jobs=JobStore(tmp_path, monitor=False))
    with TestClient(app) as client:
        for method, path in (("GET", "/jobs"), ("GET", "/jobs/x"), ("DELETE", "/jobs/x"), ("POST", "/model")):
            response = client.request(method, path, json={} if method == "POST" else None)
            assert response.status_code == 401, (method, path)
        assert client.post("/jobs", json={}).status_code == 401
        keyed = {"X-API-Key": KEY}
        assert client.get("/jobs", headers=keyed).status_code == 200
        assert client.get("/jobs/x", headers=keyed).status_code == 404
        assert client.post("/jobs", json={}, headers=keyed).status_code == 422  # the payload, not the key
        schema = client.get("/openapi.json").json()
    assert schema["paths"]["/jobs"]["post"]["security"] == [{"APIKey": []}]


def test_writes_that_rebuild_the_state_get_the_slow_timeout():
    """PUT /items or POST /model may take minutes on a large catalogue: they get
    `slow_request_timeout`, every other request `request_timeout`."""
    import time as time_module

    from fastapi import FastAPI

    from bert4rec.api.app import is_public, is_slow
    from bert4rec.api.middleware import install_middleware

    def app_with(slow_timeout: float | None) -> FastAPI:
        app = FastAPI()

        @app.put("/items/{item_id}")
        def put_item(item_id: str) -> dict:
            time_module.sleep(0.4)
            return {"item_id": item_id}

        @app.get("/slow-read")
        def slow_read() -> dict:
            time_module.sleep(0.4)
            return {}

        install_middleware(
            app,
            max_body_bytes=1000,
            max_concurrency=None,
            retry_after_s=1,
            request_timeout=0.1,
            api_key=None,
            is_public=is_public,
            allowed_hosts=["*"],
            cors_origins=[],
            slow=is_slow,
            slow_timeout=slow_timeout,
        )
        return app

    with TestClient(app_with(5.0)) as client:
        assert client.put("/items/7").json() == {"item_id": "7"}  # 0.4 s: past 0.1, within 5
        read = client.get("/slow-read")
        assert read.status_code == 504 and "--request-timeout" in read.json()["detail"]
    with TestClient(app_with(0.1)) as client:
        put = client.put("/items/7")
        assert put.status_code == 504 and "BERT4REC_SLOW_REQUEST_TIMEOUT" in put.json()["detail"]
    with TestClient(app_with(None)) as client:  # no limit for them
        assert client.put("/items/7").status_code == 200
    assert is_slow("POST", "/model") and is_slow("DELETE", "/items/a/b") and not is_slow("POST", "/recommend")
