"""Catalogue updates over HTTP: PUT /items/{id} adds an item from its text, DELETE retires one; the
changes survive a restart and every bad input answers a 4xx naming the problem, changing nothing."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from bert4rec.api import create_app
from bert4rec.artifacts import bundle_version
from bert4rec.inference.catalog import CATALOG_DIR
from bert4rec.inference.recommender import Recommender

NEW = {"text": "a brand new release", "metadata": {"title": "Item 900 (Genre99)", "genres": "Genre99"}}


@pytest.fixture
def served(fused_artifact, tmp_path, minilm):
    folder = tmp_path / "model"
    shutil.copytree(fused_artifact, folder)

    def start() -> TestClient:
        rec = Recommender.load(folder)
        rec.enable_content(minilm)  # the shared encoder: create_app would load its own
        return TestClient(create_app(rec))

    return folder, start


def recommend(client: TestClient, **body) -> list:
    response = client.post("/recommend", json={"top_k": 10, **body})
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


def test_add_recommend_filter_retire_restart(served):
    folder, start = served
    client = start()
    health = client.get("/health").json()
    assert health["catalog"] == {"version": 0, "trained": 60, "added": 0, "retired": 0, "active": 60}
    assert health["text_cold_start"] is True and health["accepts_new_items"] is True

    added = client.put("/items/900", json=NEW)
    assert added.status_code == 201, added.text
    assert added.json() == {
        "item_id": 900,
        "status": "added",
        "catalog": {"version": 1, "trained": 60, "added": 1, "retired": 0, "active": 61},
    }
    assert client.get("/items/900").json() == {
        "item_id": 900,
        "title": "Item 900 (Genre99)",
        "metadata": {"genres": "Genre99"},
    }
    only_new = {"filters": {"meta.genres": "Genre99"}}
    user = 1
    assert recommend(client, query_type="user_to_item", user_id=user, **only_new) == [900]
    assert recommend(client, query_type="contextual", user_id=user, item_id=3, **only_new) == [900]
    assert recommend(client, query_type="sequential", item_ids=[3, 4], **only_new) == [900]
    assert recommend(client, query_type="item_to_item", item_id=3, **only_new) == [900]
    # the new item as the query item
    assert len(recommend(client, query_type="sequential", item_ids=[3, 900])) == 10
    assert len(recommend(client, query_type="contextual", user_id=user, item_id=900)) == 10
    assert len(recommend(client, query_type="item_to_item", item_id=900)) == 10

    updated = client.put("/items/900", json={"metadata": {"title": "Item 900 v2", "genres": "Genre99"}})
    assert updated.status_code == 200 and updated.json()["status"] == "updated"
    assert client.get("/items/900").json()["title"] == "Item 900 v2"

    retired = client.delete("/items/5")
    assert retired.status_code == 200, retired.text
    assert retired.json()["catalog"] == {"version": 3, "trained": 60, "added": 1, "retired": 1, "active": 60}
    everything = recommend(client, query_type="sequential", item_ids=[3], top_k=1000, exclude_seen=False)
    assert 5 not in everything and 900 in everything

    restarted = start()  # a new process: everything comes back from the catalogue folder
    assert restarted.get("/health").json()["catalog"]["version"] == 3
    assert recommend(restarted, query_type="user_to_item", user_id=user, **only_new) == [900]
    again = recommend(restarted, query_type="sequential", item_ids=[3], top_k=1000, exclude_seen=False)
    assert again == everything
    assert len(list((bundle_version(folder) / CATALOG_DIR).glob("catalog-*.safetensors"))) == 3


def test_a_fused_bundle_serves_text_queries_without_a_flag(served, monkeypatch, minilm):
    folder, _ = served
    # create_app loads the encoder itself for a bundle with text vectors: hand it the shared one
    monkeypatch.setattr("bert4rec.text.MiniLMEncoder.load", lambda self: minilm)
    client = TestClient(create_app(folder))
    assert client.get("/health").json()["text_cold_start"] is True
    body = {"query_type": "item_to_item", "item_text": "Genre3", "top_k": 3}
    assert client.post("/recommend", json=body).json()["path"] == "content"


BAD = [
    # (method, path, body, status, detail part)
    ("put", "/items/1", NEW, 409, "item 1 is a trained item"),
    ("put", "/items/901", {"text": "   "}, 422, "text is empty"),
    ("put", "/items/901", {"text": ""}, 422, "at least 1 character"),
    ("put", "/items/901", {"text": "x" * 2001}, 422, "at most 2000 characters"),
    ("put", "/items/901", {"text": 5}, 422, "valid string"),
    ("put", "/items/901", {"metadata": {"colour": "red"}}, 422, "unknown metadata field 'colour'"),
    ("put", "/items/901", {"metadata": {"genres": ["a"]}}, 422, "metadata field 'genres' expects a string"),
    ("put", "/items/901", {"text": "x", "price": 3}, 422, "Extra inputs are not permitted"),
    ("put", "/items/abc", {"text": "x"}, 422, "item id 'abc' is not an integer"),
    ("put", "/items/901", {}, 422, "item 901 has no text"),
    ("delete", "/items/12345", None, 404, "unknown item id '12345'"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "detail"), BAD, ids=[b[4] for b in BAD])
def test_bad_updates_answer_4xx_and_change_nothing(served, method, path, body, status, detail):
    folder, start = served
    client = start()
    response = client.request(method.upper(), path, json=body)
    assert response.status_code == status, response.text
    assert detail in response.text
    if status == 422:
        assert isinstance(response.json()["detail"], list)  # FastAPI's validation shape, naming the field
    assert client.get("/health").json()["catalog"]["version"] == 0
    assert not (bundle_version(folder) / CATALOG_DIR).exists()


def test_retiring_twice_and_models_without_text_vectors(served, client):
    _, start = served
    fused = start()
    assert fused.delete("/items/7").status_code == 200
    twice = fused.delete("/items/7")
    assert twice.status_code == 404 and twice.json() == {"detail": "item '7' is already retired"}
    # the shared tiny model was trained without item text: it cannot place a new item
    refused = client.put("/items/901", json=NEW)
    assert refused.status_code == 409
    assert "trained without content fusion" in refused.json()["detail"]
    health = client.get("/health").json()
    assert health["accepts_new_items"] is False and health["catalog"]["version"] == 0


def test_a_running_server_serves_what_another_process_saved(served, minilm):
    """`serve --workers`: an item added through one worker (here: another process's Recommender, as
    `bert4rec items add` is) reaches the others within `catalog_sync_s`, and PUT of it is an update."""
    import time

    from bert4rec.api.settings import ServeSettings

    folder, _ = served
    rec = Recommender.load(folder)
    rec.enable_content(minilm)
    with TestClient(create_app(rec, settings=ServeSettings(catalog_sync_s=0.1, gc_freeze=False))) as client:
        other = Recommender.load(folder)
        other.enable_content(minilm)
        other.add_item(900, NEW["text"], NEW["metadata"])
        deadline = time.monotonic() + 20
        while client.get("/health").json()["catalog"]["version"] != 1:
            assert time.monotonic() < deadline, "the server did not pick the new version up"
            time.sleep(0.05)
        assert (
            recommend(client, query_type="item_to_item", item_id=900, filters={"meta.genres": "Genre99"})
            == []
        )
        assert 900 in recommend(client, query_type="sequential", session_items=[1, 2], top_k=60)
        again = client.put("/items/900", json=NEW)
        assert again.status_code == 200 and again.json()["status"] == "updated"
        assert again.json()["catalog"]["version"] == 2
    assert other.refresh_catalog() is True  # and back the other way
