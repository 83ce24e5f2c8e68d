"""The browser tests skip without Chromium on a developer's machine, and fail under CI=true."""

from __future__ import annotations

import pytest
from browser_helpers import chromium_page, chromium_path


@pytest.fixture
def no_browser(monkeypatch, tmp_path):
    monkeypatch.setenv("BERT4REC_CHROMIUM", str(tmp_path / "no-such-chromium"))
    assert chromium_path() is None


@pytest.mark.parametrize("ci", ["true", "True", "1"])
def test_missing_browser_fails_under_ci(no_browser, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="no Chromium binary.*CI=true"), chromium_page():
        pass


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_missing_browser_skips_elsewhere(no_browser, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="no Chromium binary"), chromium_page():
        pass
