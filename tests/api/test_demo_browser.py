"""The demo page end to end: uvicorn on a loopback port serving the tiny model, in headless Chromium."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from browser_helpers import chromium_page, save_screenshot


@pytest.fixture(scope="module")
def server_url(api_rec):
    """A real HTTP server (uvicorn, in a thread) on a free loopback port; stopped after the module."""
    import uvicorn

    from bert4rec.api import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(api_rec), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


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
        page.wait_for_function("document.querySelector('#result-path').textContent === 'path: popularity'")
        assert "not in the training data" in page.text_content("#user-note")
        assert "most popular" in page.text_content("#result-note")

        # a guest's session built from the item search, with a genre filter
        page.fill("#item-search", "(Genre2)")
        page.wait_for_function(
            "(rows => rows.length > 1 && rows.every(li => li.textContent.includes('Genre2')))"
            "([...document.querySelectorAll('#search-results li')])"
        )
        page.locator("#search-results li button").nth(0).click()
        page.locator("#search-results li button").nth(1).click()
        assert page.locator("#session li").count() == 2
        page.select_option("#filter-field", "genres")
        page.fill("#filter-value", "Genre3")
        page.click("#session-go")
        page.wait_for_function(
            "document.querySelector('#result-note').textContent.startsWith('session of 2')"
        )
        assert page.text_content("#result-path") == "path: model"
        details = page.locator("#result-table tbody tr td:nth-child(3)").all_text_contents()
        assert details and all(d == "Genre3" for d in details)
        assert page.locator("#error").is_hidden()
        shot = save_screenshot(page, tmp_path, "demo")
    assert shot.stat().st_size > 20_000
