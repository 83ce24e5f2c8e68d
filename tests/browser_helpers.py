"""Headless Chromium for the page tests (playwright driving the system's Chromium; no browser download).

Tests that use `chromium_page` skip, with the reason, when playwright or a Chromium binary is
missing (Debian: `apt-get install chromium`; elsewhere set BERT4REC_CHROMIUM to the binary).
Screenshots go to the test's tmp folder and, when BERT4REC_SCREENSHOTS names a folder, there too.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    """$BERT4REC_CHROMIUM, else the first Chromium-like binary on PATH."""
    env = os.environ.get("BERT4REC_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


@contextmanager
def chromium_page(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A playwright Page in headless Chromium, or a skip saying what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; the dev extra has it)")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium binary (apt-get install chromium, or set BERT4REC_CHROMIUM)")
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
