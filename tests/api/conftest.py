"""An app around the tiny trained model, shared by the API tests (the Recommender is read-only)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil

import pytest

if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("pydantic_settings") is None:
    # the API needs the serve extra (pip install -e ".[serve]"; the dev extra includes it)
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def api_rec(tiny_artifact):
    from bert4rec.inference.recommender import Recommender

    return Recommender.load(tiny_artifact)


@pytest.fixture(scope="session")
def client(api_rec):
    from fastapi.testclient import TestClient

    from bert4rec.api import create_app

    with TestClient(create_app(api_rec)) as c:
        yield c


# user ids that are HTML, script or path fragments (issue 15, class 8)
HOSTILE = ["<!--<script>", "</script><script>alert(1)</script>", "a/b", "x&amp;\u2028y", "c/../d"]


@pytest.fixture(scope="session")
def hostile_rec(tiny_artifact, tmp_path_factory):
    """The tiny model with string user ids, some of them HTML, script or path fragments."""
    from bert4rec.artifacts import bundle_version
    from bert4rec.inference.recommender import Recommender

    root = tmp_path_factory.mktemp("hostile") / "model"
    shutil.copytree(tiny_artifact, root)
    folder = bundle_version(root)
    vocab = json.loads((folder / "vocab.json").read_text())
    users = [f"user/{u}" for u in vocab["user_ids"]]
    users[: len(HOSTILE)] = HOSTILE
    vocab["user_ids"] = users
    (folder / "vocab.json").write_text(json.dumps(vocab))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["vocab.json"] = hashlib.sha256((folder / "vocab.json").read_bytes()).hexdigest()
    manifest.get("sizes", {})["vocab.json"] = (folder / "vocab.json").stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return Recommender.load(root)


@pytest.fixture
def uvicorn_calls(monkeypatch):
    """`bert4rec serve` without a server: each uvicorn.run call recorded as (app, its keyword
    arguments + "threads", the torch thread count the process serves with)."""
    import torch
    import uvicorn

    calls = []
    monkeypatch.setattr(
        uvicorn,
        "run",
        lambda application, **kw: calls.append((application, {**kw, "threads": torch.get_num_threads()})),
    )
    return calls
