"""GET /health and GET /items/{item_id}."""

from __future__ import annotations


def test_health(client, api_rec):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "model_type": "bert4rec",
        "n_items": api_rec.vocab.n_items,
        "n_users": api_rec.vocab.n_users,
        "max_history": api_rec.max_len - 1,
        "fingerprint": api_rec.bundle.manifest["files"]["model.safetensors"][:16],
        "data_fingerprint": api_rec.bundle.run["data_fingerprint"],
        "filter_fields": ["genres", "title"],
        "text_cold_start": False,
        "catalog": {
            "version": 0,
            "trained": api_rec.vocab.n_items,
            "added": 0,
            "retired": 0,
            "active": api_rec.vocab.n_items,
        },
        "accepts_new_items": False,
    }


def test_item_lookup_by_int_or_string_id(client, api_rec):
    item = api_rec.vocab.item_ids[7]
    response = client.get(f"/items/{item}")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "item_id": item,
        "title": api_rec.item_info(item)["title"],
        "metadata": {"genres": api_rec.item_info(item)["genres"]},
    }


def test_unknown_item_is_404_with_the_id(client, api_rec):
    response = client.get("/items/no-such-item")
    assert response.status_code == 404
    assert response.json() == {
        "detail": f"unknown item id 'no-such-item' (not in the {api_rec.vocab.n_items} trained items)"
    }


def test_openapi_documents_the_contract(client):
    schema = client.get("/openapi.json").json()
    recommend = schema["paths"]["/recommend"]["post"]
    assert {"200", "404", "422"} <= set(recommend["responses"])
    assert "404" in schema["paths"]["/items/{item_id}"]["get"]["responses"]
    query = schema["components"]["schemas"]["UserToItemQuery"]["properties"]["top_k"]
    assert (query["minimum"], query["maximum"]) == (1, 1000)
