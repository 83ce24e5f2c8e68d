"""Titles, ids and paths are data, not Rich markup: the CLI prints them literally and never crashes."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
from typer.testing import CliRunner

from bert4rec import artifacts
from bert4rec.artifacts import bundle_version
from bert4rec.cli import app

MARKUP = ["[/]", "[bold]loud[/bold]", "[link=https://evil.example]click[/link]", "[red", "x[/red]y"]


@pytest.fixture
def marked(tiny_artifact, tmp_path):
    """A copy of the tiny bundle whose item titles and genres are Rich markup."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_artifact, folder)
    live = bundle_version(folder)
    items = pl.read_parquet(live / "items.parquet")
    titles = [MARKUP[i % len(MARKUP)] for i in range(items.height)]
    items = items.with_columns(title=pl.Series(titles), genres=pl.lit("[/genres]"))
    items.write_parquet(live / "items.parquet")
    manifest = json.loads((live / "manifest.json").read_text())
    manifest["files"]["items.parquet"] = artifacts._sha256(live / "items.parquet")
    manifest["sizes"]["items.parquet"] = (live / "items.parquet").stat().st_size
    (live / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_recommend_prints_markup_titles_literally(marked):
    result = CliRunner().invoke(app, ["recommend", "--model", str(marked), "--user", "1", "--k", "20"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    shown = [m for m in MARKUP if m in result.output]
    assert len(shown) >= 3, result.output  # printed as text, brackets and all
    assert "[/genres]" in result.output


@pytest.mark.parametrize("user", ["[/]", "[bold]u", "[link=x]u"])
def test_markup_in_a_user_or_item_id_is_printed_literally(marked, user):
    result = CliRunner().invoke(app, ["recommend", "--model", str(marked), "--user", user, "--k", "3"])
    assert result.exit_code == 0, result.output
    assert f"user {user} is unknown" in result.output
    result = CliRunner().invoke(app, ["recommend", "--model", str(marked), "--items", f"1,{user}"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"unknown item id {user!r}" in result.output


def test_an_error_message_with_markup_and_newlines_is_one_literal_line(tmp_path):
    missing = tmp_path / "[bold]no\nsuch[/]"
    result = CliRunner().invoke(app, ["recommend", "--model", str(missing), "--user", "1"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "[bold]no such[/]" in result.output
