"""The server moves what it loaded out of the garbage collector's reach (ServeSettings.gc_freeze)."""

from __future__ import annotations

import gc

import pytest
from fastapi.testclient import TestClient

from bert4rec.api.app import create_app
from bert4rec.api.settings import ServeSettings


@pytest.fixture
def unfreeze():
    yield
    gc.unfreeze()  # give the test process its objects back


def test_the_server_freezes_the_loaded_model_at_startup(tiny_artifact, unfreeze):
    gc.unfreeze()
    app = create_app(tiny_artifact, settings=ServeSettings())
    assert gc.get_freeze_count() == 0  # building the app alone freezes nothing (library use)
    with TestClient(app) as client:  # the server's startup
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the recommender, its vocabularies and histories among them
        assert client.get("/health").status_code == 200


def test_gc_freeze_can_be_turned_off(tiny_artifact, unfreeze):
    gc.unfreeze()
    app = create_app(tiny_artifact, settings=ServeSettings(gc_freeze=False))
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert gc.get_freeze_count() == 0
