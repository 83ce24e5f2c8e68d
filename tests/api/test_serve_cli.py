"""`bert4rec serve`: builds the app and hands it to uvicorn; a broken model folder fails at startup."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from bert4rec.artifacts import bundle_version
from bert4rec.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def keep_torch_threads():
    import torch

    before = torch.get_num_threads()  # serve sets the process-wide thread count
    yield
    torch.set_num_threads(before)


@pytest.fixture
def uvicorn_calls(monkeypatch):
    import torch
    import uvicorn

    calls = []
    monkeypatch.setattr(
        uvicorn,
        "run",
        lambda application, **kw: calls.append((application, {**kw, "threads": torch.get_num_threads()})),
    )
    return calls


def test_serve_builds_the_app_and_runs_uvicorn(tiny_artifact, uvicorn_calls):
    from fastapi import FastAPI

    result = runner.invoke(
        app, ["serve", "--model", str(tiny_artifact), "--host", "0.0.0.0", "--port", "9123"]
    )
    assert result.exit_code == 0, result.output
    ((application, kwargs),) = uvicorn_calls
    assert isinstance(application, FastAPI)
    assert kwargs == {"host": "0.0.0.0", "port": 9123, "log_level": "info", "threads": 1}
    assert application.state.recommender.vocab.n_items == 60


def test_serve_reads_the_model_from_the_environment(tiny_artifact, uvicorn_calls, monkeypatch):
    monkeypatch.setenv("BERT4REC_MODEL", str(tiny_artifact))
    monkeypatch.setenv("BERT4REC_PORT", "8111")
    result = runner.invoke(app, ["serve", "--torch-threads", "2"])
    assert result.exit_code == 0, result.output
    kwargs = uvicorn_calls[0][1]
    assert (kwargs["port"], kwargs["host"], kwargs["threads"]) == (8111, "127.0.0.1", 2)


def test_serve_without_a_model_says_what_to_do(uvicorn_calls, monkeypatch):
    monkeypatch.delenv("BERT4REC_MODEL", raising=False)
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "no model to serve: pass a model folder or set BERT4REC_MODEL" in result.output
    assert not uvicorn_calls


def test_corrupted_model_fails_at_startup_with_the_loader_message(tiny_artifact, tmp_path, uvicorn_calls):
    folder = tmp_path / "model"
    shutil.copytree(tiny_artifact, folder)
    weights = bundle_version(folder) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    result = runner.invoke(app, ["serve", "--model", str(folder)])
    assert result.exit_code == 2
    assert "model.safetensors is corrupted or was modified" in result.output.replace("\n", "")
    assert not uvicorn_calls


def test_missing_model_folder_fails_at_startup(tmp_path, uvicorn_calls):
    result = runner.invoke(app, ["serve", "--model", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "model artifact not found" in result.output and not uvicorn_calls


def test_mismatched_vocab_fails_at_startup(tiny_artifact, tmp_path):
    import hashlib
    import json

    from bert4rec.api import create_app
    from bert4rec.errors import ArtifactError

    shutil.copytree(tiny_artifact, tmp_path / "model")
    folder = bundle_version(tmp_path / "model")
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["item_ids"] = vocab["item_ids"][:-1]
    (folder / "vocab.json").write_text(json.dumps(vocab))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["vocab.json"] = hashlib.sha256((folder / "vocab.json").read_bytes()).hexdigest()
    manifest["sizes"]["vocab.json"] = (folder / "vocab.json").stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        ArtifactError, match="vocab.json has 59 items / 150 users but the manifest says 60 / 150"
    ):
        create_app(folder)
