"""The demo page and the two routes it needs besides /recommend: GET /items?query= and GET /users/{id}."""

from __future__ import annotations

import json
import re


def test_root_redirects_to_the_demo_page(client):
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/demo"


def test_demo_page_is_self_contained_with_sample_users(client, api_rec):
    response = client.get("/demo")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no CDN, nothing fetched from outside
    assert "/*BOOTSTRAP*/" not in html
    data = json.loads(re.search(r"const DEMO = (\{.*?\});", html).group(1))
    assert data["sample_users"] and all(api_rec.vocab.has_user(u) for u in data["sample_users"])
    for element in ('id="user-id"', 'id="item-search"', 'id="session-go"', 'id="result-table"'):
        assert element in html
    assert "/demo" not in client.get("/openapi.json").text  # the page is not part of the API contract


def test_item_search_matches_titles_and_ids_case_insensitively(client, api_rec):
    response = client.get("/items", params={"query": "(genre2)", "limit": 100})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == "(genre2)" and body["items"]
    assert all(
        "(Genre2)" in item["title"] and item["metadata"] == {"genres": "Genre2"} for item in body["items"]
    )
    # most popular first within a group
    pop = {
        item_id: api_rec.bundle.popularity[api_rec.vocab.item_idx(item_id)]
        for item_id in api_rec.vocab.item_ids
    }
    counts = [pop[item["item_id"]] for item in body["items"]]
    assert counts == sorted(counts, reverse=True)
    # an exact id comes first, before titles that merely contain the digits
    item_id = api_rec.vocab.item_ids[3]
    first = client.get("/items", params={"query": str(item_id)}).json()["items"][0]
    assert first["item_id"] == item_id
    assert client.get("/items", params={"query": "no such title"}).json()["items"] == []


def test_empty_item_search_lists_popular_items_and_limit_is_checked(client, api_rec):
    items = client.get("/items", params={"limit": 3}).json()["items"]
    top = api_rec.user_to_item("nobody", k=3).items  # popularity for an unknown user
    assert [i["item_id"] for i in items] == [r.item_id for r in top]
    for bad in (0, 101, "x"):
        response = client.get("/items", params={"limit": bad})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "limit"]
    assert client.get("/items", params={"query": "x" * 201}).status_code == 422


def test_user_history_is_the_most_recent_items_oldest_first(client, api_rec):
    user = api_rec.vocab.user_ids[6]
    history = api_rec.history(user)
    body = client.get(f"/users/{user}", params={"limit": 5}).json()
    assert body["user_id"] == user and body["history_length"] == len(history)
    assert [i["item_id"] for i in body["items"]] == history[-5:]
    assert body["items"][0]["title"] == api_rec.title(history[-5])


def test_unknown_user_is_404_with_the_id(client):
    response = client.get("/users/nobody")
    assert response.status_code == 404
    assert "nobody" in response.json()["detail"]
    assert client.get("/users/1", params={"limit": 0}).status_code == 422
