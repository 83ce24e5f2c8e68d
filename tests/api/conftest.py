"""An app around the tiny trained model, shared by the API tests (the Recommender is read-only)."""

from __future__ import annotations

import importlib.util

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
