"""The demo page end to end: uvicorn on a loopback port serving the tiny model, in headless Chromium."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import pytest
from browser_helpers import chromium_page, save_screenshot


@contextmanager
def serving(rec):
    """A real HTTP server (uvicorn, in a thread) on a free loopback port."""
    import uvicorn

    from bert4rec.api import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(rec), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server_url(api_rec):
    """The tiny model served for the module."""
    with serving(api_rec) as url:
        yield url


def wait_until(condition, timeout: float = 15.0) -> None:
    """Poll `condition` (which reads the page through locators): page.wait_for_function would eval a
    string in the page, which the page's CSP (no 'unsafe-eval') rightly refuses."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the page"
        time.sleep(0.05)


def watch(page, base_url: str) -> dict[str, list[str]]:
    """Console errors (CSP violations among them) and requests to any other host (blocked)."""
    seen: dict[str, list[str]] = {"errors": [], "outside": []}
    page.on("console", lambda msg: seen["errors"].append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: seen["errors"].append(str(err)))

    def route(request_route):
        url = request_route.request.url
        if url.startswith(base_url) or url.startswith(("data:", "blob:")):
            request_route.continue_()
        else:
            seen["outside"].append(url)
            request_route.abort()

    page.route("**/*", route)
    return seen


@pytest.mark.slow
def test_demo_recommends_for_a_user_a_stranger_and_a_session(server_url, api_rec, tmp_path):
    user = api_rec.vocab.user_ids[6]
    expected = api_rec.user_to_item(user, k=5).items
    with chromium_page() as page:
        page.goto(server_url + "/")  # redirects to /demo
        page.wait_for_selector("body[data-ready='true']")
        assert page.url.endswith("/demo")
        assert "bert4rec" in page.text_content("#model-info")
        assert page.locator("#sample-users option").count() > 0

        # a known user: history with titles, then the model's list (same as the Recommender's)
        page.select_option("#top-k", "5")
        page.fill("#user-id", str(user))
        page.click("#user-go")
        page.wait_for_selector("#result-table tbody tr")
        assert page.text_content("#result-path") == "path: model"
        assert page.locator("#user-history li").count() == 8
        rows = page.locator("#result-table tbody tr")
        assert rows.count() == 5
        titles = [rows.nth(i).locator("td").nth(1).text_content() for i in range(5)]
        assert titles == [r.title for r in expected]
        assert "Genre" in rows.nth(0).locator("td").nth(2).text_content()

        # an unknown user: popular items, and the page says why
        page.fill("#user-id", "somebody-new")
        page.click("#user-go")
        wait_until(lambda: page.text_content("#result-path") == "path: popularity")
        assert "not in the training data" in page.text_content("#user-note")
        assert "most popular" in page.text_content("#result-note")

        # a guest's session built from the item search, with a genre filter
        page.fill("#item-search", "(Genre2)")
        wait_until(
            lambda: (
                len(rows := page.locator("#search-results li").all_text_contents()) > 1
                and all("Genre2" in row for row in rows)
            )
        )
        page.locator("#search-results li button").nth(0).click()
        page.locator("#search-results li button").nth(1).click()
        assert page.locator("#session li").count() == 2
        page.select_option("#filter-field", "genres")
        page.fill("#filter-value", "Genre3")
        page.click("#session-go")
        wait_until(lambda: (page.text_content("#result-note") or "").startswith("session of 2"))
        assert page.text_content("#result-path") == "path: model"
        details = page.locator("#result-table tbody tr td:nth-child(3)").all_text_contents()
        assert details and all(d == "Genre3" for d in details)
        assert page.locator("#error").is_hidden()
        shot = save_screenshot(page, tmp_path, "demo")
    assert shot.stat().st_size > 20_000


@pytest.mark.slow
def test_demo_page_runs_under_its_csp_with_hostile_user_ids(hostile_rec, monkeypatch):
    """Ids like "<!--<script>" and "</script>..." neither stop the page script nor inject one; the
    strict CSP (hashes, no inline handlers) lets the page run; an id with "/" loads its history."""
    import bert4rec.api.routes.demo as demo

    monkeypatch.setattr(demo, "SAMPLE_USERS", len(hostile_rec.vocab.user_ids))
    with serving(hostile_rec) as url, chromium_page() as page:
        seen = watch(page, url)
        page.add_init_script("window.alerted = false; window.alert = () => { window.alerted = true; };")
        page.goto(url + "/demo")
        page.wait_for_selector("body[data-ready='true']")
        options = page.eval_on_selector_all("#sample-users option", "els => els.map(e => e.value)")
        assert options == hostile_rec.vocab.user_ids
        page.fill("#user-id", "a/b")
        page.click("#user-go")
        page.wait_for_selector("#result-table tbody tr")
        assert page.locator("#user-history li").count() == min(8, len(hostile_rec.history("a/b")))
        assert page.text_content("#result-path") == "path: model"
        assert page.evaluate("window.alerted") is False
    assert seen == {"errors": [], "outside": []}


@pytest.mark.slow
@pytest.mark.parametrize(("page_path", "ready"), [("/docs", ".opblock"), ("/redoc", "[role=menuitem]")])
def test_api_docs_render_offline_under_their_csp(server_url, page_path, ready):
    """Swagger UI and ReDoc come from this server: nothing is fetched elsewhere, no CSP error."""
    with chromium_page() as page:
        seen = watch(page, server_url)
        page.goto(server_url + page_path)
        page.wait_for_selector(ready)
        assert "/recommend" in page.content()
    assert seen["outside"] == []
    # ReDoc's "powered by" logo points at cdn.redoc.ly: the CSP blocks it (reported as an error)
    assert all("cdn.redoc.ly" in error and "img-src" in error for error in seen["errors"]), seen["errors"]
