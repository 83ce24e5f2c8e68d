"""The HTML report prints titles, genres and ids as text: markup in the data cannot inject into the page."""

from __future__ import annotations

import json
import shutil

import polars as pl
from helpers import tiny_config

from bert4rec import artifacts
from bert4rec.artifacts import bundle_version
from bert4rec.report import render_report

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_html_in_titles_and_genres_is_escaped(tmp_path, tiny_prepared):
    from bert4rec.pipeline import compare

    out = tmp_path / "run"
    compare(["bert4rec"], tiny_config(), out, prepared=tiny_prepared, progress=False)
    live = bundle_version(out / "bert4rec" / "model")
    items = pl.read_parquet(live / "items.parquet")
    items = items.with_columns(title=pl.lit(EVIL), genres=pl.lit("</td><b>genre</b>"))
    items.write_parquet(live / "items.parquet")
    manifest = json.loads((live / "manifest.json").read_text())
    manifest["files"]["items.parquet"] = artifacts._sha256(live / "items.parquet")
    manifest["sizes"]["items.parquet"] = (live / "items.parquet").stat().st_size
    (live / "manifest.json").write_text(json.dumps(manifest))
    html = render_report(out, None, 2, 5)
    assert "<script>" not in html and "<img src=x" not in html and "<b>genre</b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html  # shown as text, in the examples
    shutil.rmtree(out)
