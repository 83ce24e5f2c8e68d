"""An app around the tiny trained model, shared by the API tests (the Recommender is read-only)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the API needs the serve extra: pip install -e '.[serve]'")


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
