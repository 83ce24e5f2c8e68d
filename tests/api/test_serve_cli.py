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


def test_serve_builds_the_app_and_runs_uvicorn(tiny_artifact, uvicorn_calls):
    from fastapi import FastAPI

    result = runner.invoke(
        app, ["serve", "--model", str(tiny_artifact), "--host", "0.0.0.0", "--port", "9123"]
    )
    assert result.exit_code == 0, result.output
    ((application, kwargs),) = uvicorn_calls
    assert isinstance(application, FastAPI)
    assert kwargs == {
        "host": "0.0.0.0",
        "port": 9123,
        "log_level": "info",
        "server_header": False,
        "threads": 1,
    }
    assert application.state.recommender.vocab.n_items == 60
    defaults = application.state.settings
    assert (defaults.max_body_bytes, defaults.max_concurrency, defaults.request_timeout) == (
        1_048_576,
        64,
        10.0,
    )
    assert defaults.api_key is None and defaults.allowed_hosts == ["*"] and defaults.cors_origins == []


def test_serve_limits_and_hygiene_options(tiny_artifact, uvicorn_calls, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-s3cret-s3cret\n")
    result = runner.invoke(
        app,
        [
            "serve", "--model", str(tiny_artifact),
            "--max-body-bytes", "5000", "--max-concurrency", "0", "--request-timeout", "2.5",
            "--api-key-file", str(key_file),
            "--allowed-host", "api.example.com", "--allowed-host", "localhost",
            "--cors-origin", "https://shop.example",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    settings = uvicorn_calls[0][0].state.settings
    assert (settings.max_body_bytes, settings.max_concurrency, settings.request_timeout) == (5000, None, 2.5)
    assert settings.api_key.get_secret_value() == "s3cret-s3cret-s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.allowed_hosts == ["api.example.com", "localhost"]
    assert settings.cors_origins == ["https://shop.example"]


def test_serve_limits_from_the_environment(tiny_artifact, uvicorn_calls, monkeypatch):
    monkeypatch.setenv("BERT4REC_MAX_CONCURRENCY", "8")
    monkeypatch.setenv("BERT4REC_REQUEST_TIMEOUT", "0")
    monkeypatch.setenv("BERT4REC_API_KEY", "from-the-environment-0123")
    result = runner.invoke(app, ["serve", "--model", str(tiny_artifact)])
    assert result.exit_code == 0, result.output
    settings = uvicorn_calls[0][0].state.settings
    assert (settings.max_concurrency, settings.request_timeout) == (8, None)
    assert settings.api_key.get_secret_value() == "from-the-environment-0123"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--api-key-file", "/no/such/key"], {}, "cannot read the API key file /no/such/key"),
        (
            [],
            {"BERT4REC_API_KEY": "short"},
            "api_key: Value error, the API key must have at least 16 characters",
        ),
        ([], {"BERT4REC_MAX_BODY_BYTES": "lots"}, "max_body_bytes: Input should be a valid integer"),
    ],
)
def test_bad_serve_settings_are_one_line(tiny_artifact, uvicorn_calls, monkeypatch, args, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["serve", "--model", str(tiny_artifact), *args])
    assert result.exit_code == 2
    assert message in result.output.replace("\n", "")
    assert "Traceback" not in result.output and not uvicorn_calls


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
