"""POST /recommend: each query type, popularity fallback, filters, exclude_seen, truncation, id types."""

from __future__ import annotations

import pytest


def post(client, **body):
    response = client.post("/recommend", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def ids(body):
    return [item["item_id"] for item in body["items"]]


def test_item_to_item(client, api_rec):
    item = api_rec.vocab.item_ids[4]
    body = post(client, query_type="item_to_item", item_id=item, top_k=5)
    assert body["query_type"] == "item_to_item" and body["path"] == "item_vectors"
    assert len(body["items"]) == 5 and item not in ids(body)
    assert ids(body) == [r.item_id for r in api_rec.item_to_item(item, k=5).items]
    first = body["items"][0]
    assert set(first) == {"rank", "item_id", "title", "score", "metadata"}
    assert first["rank"] == 1 and first["title"].startswith("Item ") and "genres" in first["metadata"]


def test_user_to_item_known_user(client, api_rec):
    user = api_rec.vocab.user_ids[3]
    body = post(client, query_type="user_to_item", user_id=user, top_k=4)
    assert body["path"] == "model"
    assert ids(body) == [r.item_id for r in api_rec.user_to_item(user, k=4).items]
    assert not set(ids(body)) & set(api_rec.history(user))
    assert body["history_length"] == len(api_rec.history(user))
    assert body["max_history"] == api_rec.max_history


def test_unknown_user_falls_back_to_popularity(client, api_rec):
    body = post(client, query_type="user_to_item", user_id="someone-new", top_k=3)
    assert body["path"] == "popularity" and body["history_length"] == 0
    assert api_rec.vocab.item_idx(body["items"][0]["item_id"]) == int(api_rec.bundle.popularity.argmax())


def test_contextual(client, api_rec):
    user, current = api_rec.vocab.user_ids[5], api_rec.vocab.item_ids[-1]
    body = post(client, query_type="contextual", user_id=user, item_id=current, top_k=4)
    assert body["path"] == "model" and current not in ids(body)
    assert body["history_length"] == len(api_rec.history(user)) + 1
    assert ids(body) == [r.item_id for r in api_rec.contextual(user, current, k=4).items]


def test_sequential(client, api_rec):
    session = api_rec.vocab.item_ids[10:13]
    body = post(client, query_type="sequential", session_items=session, top_k=4)
    assert body["path"] == "model" and not body["truncated"] and body["used_length"] == 3
    assert not set(session) & set(ids(body))
    assert ids(body) == [r.item_id for r in api_rec.sequential(session_items=session, k=4).items]


def test_sequential_accepts_item_ids_as_an_alias_of_session_items(client, api_rec):
    session = api_rec.vocab.item_ids[10:13]
    spec_name = post(client, query_type="sequential", session_items=session, top_k=4)
    assert post(client, query_type="sequential", item_ids=session, top_k=4) == spec_name
    assert ids(spec_name) == [r.item_id for r in api_rec.sequential(item_ids=session, k=4).items]
    both = client.post(
        "/recommend", json={"query_type": "sequential", "session_items": session, "item_ids": session}
    )
    assert both.status_code == 422 and "not both" in both.text


def test_openapi_documents_session_items_and_its_alias(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["SequentialQuery"]
    assert "session_items" in schema["properties"] and schema["properties"]["item_ids"]["deprecated"]
    assert {"required": ["session_items"]} in schema["oneOf"] and "alias" in schema["description"]


def test_oversized_session_is_truncated_and_says_so(client, api_rec):
    session = list(api_rec.vocab.item_ids) * 3
    body = post(client, query_type="sequential", item_ids=session, top_k=3, exclude_seen=False)
    assert body["truncated"] is True
    assert body["history_length"] == len(session) and body["used_length"] == api_rec.max_history
    recent = post(
        client, query_type="sequential", item_ids=session[-api_rec.max_history :], top_k=3, exclude_seen=False
    )
    assert ids(body) == ids(recent) and recent["truncated"] is False


def test_item_ids_as_json_ints_or_strings(client, api_rec):
    assert all(isinstance(i, int) for i in api_rec.vocab.item_ids)  # generated data: integer ids
    session = api_rec.vocab.item_ids[:3]
    as_int = post(client, query_type="sequential", item_ids=session, top_k=5)
    as_str = post(client, query_type="sequential", item_ids=[str(i) for i in session], top_k=5)
    mixed = post(client, query_type="sequential", item_ids=[session[0], str(session[1]), session[2]], top_k=5)
    assert ids(as_int) == ids(as_str) == ids(mixed)
    assert all(isinstance(i, int) for i in ids(as_str))  # answers use the vocabulary's type
    user = api_rec.vocab.user_ids[0]
    assert ids(post(client, query_type="user_to_item", user_id=str(user))) == ids(
        post(client, query_type="user_to_item", user_id=user)
    )


@pytest.mark.parametrize(
    "query",
    [
        {"query_type": "item_to_item", "item_id": 1},
        {"query_type": "user_to_item", "user_id": 1},
        {"query_type": "user_to_item", "user_id": "unknown-user"},
        {"query_type": "contextual", "user_id": 1, "item_id": 2},
        {"query_type": "sequential", "item_ids": [1, 2]},
    ],
)
def test_filters_on_every_query_type(client, api_rec, query):
    genre = api_rec.item_info(api_rec.vocab.item_ids[-1])["genres"]
    body = post(client, **query, top_k=50, filters={"meta.genres": genre})
    assert body["items"] and all(item["metadata"]["genres"] == genre for item in body["items"])
    lower = post(client, **query, top_k=50, filters={"meta.genres": [genre.lower(), "no such genre"]})
    assert ids(lower) == ids(body)
    assert post(client, **query, filters={"meta.genres": "no such genre"})["items"] == []


def test_exclude_seen(client, api_rec):
    user = api_rec.vocab.user_ids[0]
    n = api_rec.vocab.n_items
    seen = set(api_rec.history(user))
    default = post(client, query_type="user_to_item", user_id=user, top_k=n)
    assert len(default["items"]) == n - len(seen) and not seen & set(ids(default))
    everything = post(client, query_type="user_to_item", user_id=user, top_k=n, exclude_seen=False)
    assert len(everything["items"]) == n and seen <= set(ids(everything))


def test_top_k_larger_than_the_catalogue_returns_everything_left(client, api_rec):
    body = post(client, query_type="item_to_item", item_id=api_rec.vocab.item_ids[0], top_k=1000)
    assert len(body["items"]) == api_rec.vocab.n_items - 1


@pytest.mark.parametrize("text", ["1_0", " 1 ", "+1", "01", "١"])
def test_non_canonical_id_texts_are_unknown_not_another_item(client, api_rec, text):
    assert api_rec.vocab.has_item(1) and api_rec.vocab.has_item(10)
    response = client.post("/recommend", json={"query_type": "item_to_item", "item_id": text})
    assert response.status_code == 404 and "unknown item id" in response.json()["detail"]
