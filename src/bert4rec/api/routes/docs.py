"""GET /docs (Swagger UI) and GET /redoc (ReDoc) with their scripts and styles served by this server.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, which fails offline and lets a third party
run script next to the API. The assets here come from the `fastapi-offline` package (Swagger UI 5
and ReDoc 2, as FastAPI's CDN links; MIT / Apache-2.0) and are mounted at DOCS_STATIC.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from bert4rec.api.middleware import content_security_policy

DOCS_STATIC = "/docs-static"
router = APIRouter(include_in_schema=False)


def _with_csp(page: HTMLResponse, *, inline_styles: bool = False, workers: bool = False) -> HTMLResponse:
    html = bytes(page.body).decode("utf-8")
    page.headers["Content-Security-Policy"] = content_security_policy(
        html, inline_styles=inline_styles, workers=workers
    )
    return page


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over /openapi.json, every file from this server (no validator badge: it calls out)."""
    root = request.scope.get("root_path", "")
    page = get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
        oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
        swagger_ui_parameters={"validatorUrl": None},
    )
    # Swagger UI styles its widgets from script at run time (style elements), hence inline styles
    return _with_csp(page, inline_styles=True)


@router.get("/docs/oauth2-redirect")
def swagger_ui_redirect() -> HTMLResponse:
    """Swagger UI's OAuth2 helper page (FastAPI's)."""
    return _with_csp(get_swagger_ui_oauth2_redirect_html())


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """ReDoc over /openapi.json, without Google Fonts."""
    root = request.scope.get("root_path", "")
    page = get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{DOCS_STATIC}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
        with_google_fonts=False,
    )
    return _with_csp(page, inline_styles=True, workers=True)


def add_docs(app: FastAPI) -> None:
    """The two pages and the static assets (the app must be built with docs_url=None, redoc_url=None)."""
    static = resources.files("fastapi_offline") / "static"
    app.mount(DOCS_STATIC, StaticFiles(directory=str(static)), name="docs-static")
    app.include_router(router)
