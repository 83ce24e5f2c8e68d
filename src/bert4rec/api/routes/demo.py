"""GET /demo: a one-page web demo over this API (static HTML with inline JS and CSS, nothing from a CDN);
GET / redirects to it. The page calls /health, /items?query=, /users/{id} and POST /recommend."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from bert4rec.api.deps import RecommenderDep
from bert4rec.api.middleware import content_security_policy

router = APIRouter(tags=["demo"])
PLACEHOLDER = "/*BOOTSTRAP*/null"
SAMPLE_USERS = 12


@lru_cache(maxsize=1)
def demo_template() -> str:
    """The page's HTML as shipped in the package (bert4rec/api/static/demo.html)."""
    return resources.files("bert4rec.api").joinpath("static/demo.html").read_text(encoding="utf-8")


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    """The demo page is the API's front page."""
    return RedirectResponse("/demo")


@router.get("/demo", include_in_schema=False)
def demo(rec: RecommenderDep) -> HTMLResponse:
    """The demo page, with a few user ids of the served model to pick from."""
    users = rec.vocab.user_ids
    step = max(1, len(users) // SAMPLE_USERS)
    data = {"sample_users": [u if isinstance(u, int) else str(u) for u in users[::step][:SAMPLE_USERS]]}
    html = demo_template().replace(PLACEHOLDER, script_json(data), 1)
    return HTMLResponse(html, headers={"Content-Security-Policy": content_security_policy(html)})


def script_json(data: object) -> str:
    """`data` as a JavaScript literal that is safe inside <script> whatever its strings hold.

    Ids and titles come from the training data: "</script>" would end the script early, and "<!--"
    followed by "<script" makes the HTML parser swallow the real "</script>" (the page script then
    never runs). So no "<", ">" or "&" reaches the HTML: they are written as \\u003c, \\u003e and
    \\u0026, which the script reads back as the same characters. ensure_ascii writes everything else
    beyond ASCII (U+2028/2029, lone surrogates) as \\u escapes too."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text
