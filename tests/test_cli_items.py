"""`bert4rec items add | retire | show`: catalogue updates from the command line."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from bert4rec.cli import app
from bert4rec.inference.recommender import Recommender

runner = CliRunner()


@pytest.fixture
def folder(fused_artifact, tmp_path, minilm, monkeypatch):
    monkeypatch.setattr("bert4rec.text.MiniLMEncoder.load", lambda self: minilm)
    target = tmp_path / "model"
    shutil.copytree(fused_artifact, target)
    return target


def test_items_add_retire_show(folder):
    added = runner.invoke(
        app,
        [
            "items",
            "add",
            str(folder),
            "900",
            "--meta",
            "title=Item 900 (Genre99)",
            "--meta",
            "genres=Genre99",
        ],
    )
    assert added.exit_code == 0, added.output
    assert "catalogue version 1: 60 trained, 1 added, 0 retired, 61 recommendable" in added.output
    retired = runner.invoke(app, ["items", "retire", str(folder), "4", "900"])
    assert retired.exit_code == 0, retired.output
    assert "version 2: 60 trained, 1 added, 2 retired, 59 recommendable" in retired.output
    shown = runner.invoke(app, ["items", "show", str(folder)])
    assert "900 (retired): Item 900 (Genre99). genres: Genre99" in shown.output
    rec = Recommender.load(folder)
    assert rec.title(900) == "Item 900 (Genre99)" and rec.catalog_info()["retired"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "{folder}", "1", "--text", "x"], "item 1 is a trained item"),
        (["add", "{folder}", "901", "--meta", "colour=red"], "unknown metadata field 'colour'"),
        (["add", "{folder}", "901", "--meta", "genres"], "must look like field=value"),
        (["add", "{folder}", "901"], "item 901 has no text"),
        (["retire", "{folder}", "12345"], "unknown item id '12345'"),
        (["show", "{folder}/missing"], "model artifact not found"),
    ],
)
def test_items_bad_input_prints_one_error_and_changes_nothing(folder, args, message):
    result = runner.invoke(app, ["items", *[a.format(folder=folder) for a in args]])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (folder / "catalog").exists()
