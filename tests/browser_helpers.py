"""Headless Chromium for the page tests (playwright driving the system's Chromium; no browser download).

Tests that use `chromium_page` skip, with the reason, when playwright or a Chromium binary is
missing (Debian: `apt-get install chromium`; elsewhere set BERT4REC_CHROMIUM to the binary). Under
CI=true they fail instead: CI installs Chromium (.ci/run), so a missing browser there is a broken
setup, not a reason to pass without the real-browser check.
Screenshots go to the test's tmp folder and, when BERT4REC_SCREENSHOTS names a folder, there too.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def in_ci() -> bool:
    """Whether this is a CI run (CI=true, as CI services and .ci/run's environment set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def browser_unavailable(reason: str) -> NoReturn:
    """Skip with `reason`, or fail under CI=true, where the browser tests must run."""
    if in_ci():
        pytest.fail(
            f"{reason}; CI=true, so the browser tests must run (.ci/run installs chromium)", pytrace=False
        )
    pytest.skip(reason)


def chromium_path() -> str | None:
    """$BERT4REC_CHROMIUM, else the first Chromium-like binary on PATH."""
    env = os.environ.get("BERT4REC_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


@contextmanager
def chromium_page(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A playwright Page in headless Chromium, or a skip (a failure under CI=true) saying what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_unavailable("playwright is not installed (pip install playwright; the dev extra has it)")
    path = chromium_path()
    if path is None:
        browser_unavailable("no Chromium binary (apt-get install chromium, or set BERT4REC_CHROMIUM)")
    with sync_playwright() as p:
        # --no-sandbox: CI and containers run as root, where Chromium's sandbox refuses to start
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def save_screenshot(page: Any, folder: Path, name: str) -> Path:
    """A full-page PNG in `folder` (and in $BERT4REC_SCREENSHOTS if set); returns its path."""
    path = Path(folder) / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("BERT4REC_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)
    return path
