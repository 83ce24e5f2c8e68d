"""Every bad request answers 4xx with a precise detail, never 5xx.

Contract: unknown item / user ids -> 404 {"detail": "<message naming the id>"}; everything else ->
422 {"detail": [{"loc": [...], "msg": "...", "type": "..."}]} (FastAPI's validation format).
"""

from __future__ import annotations

import pytest

N_ITEMS = 60  # tests/helpers.tiny_config
N_USERS = 150


def check_404(response, detail: str) -> None:
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": detail}


def check_422(response, loc: list, msg: str, kind: str | None = None) -> None:
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert isinstance(errors, list) and errors, errors
    hit = [e for e in errors if e["loc"] == loc]
    assert hit, f"no error at {loc}: {errors}"
    assert msg in hit[0]["msg"], hit[0]
    if kind:
        assert hit[0]["type"] == kind


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"query_type": "item_to_item", "item_id": 999999},
            f"unknown item id 999999 (not in the {N_ITEMS} trained items)",
        ),
        (
            {"query_type": "item_to_item", "item_id": "x1"},
            f"unknown item id 'x1' (not in the {N_ITEMS} trained items)",
        ),
        (
            {"query_type": "sequential", "item_ids": [1, "nope", 2]},
            f"unknown item id 'nope' (not in the {N_ITEMS} trained items)",
        ),
        (
            {"query_type": "contextual", "user_id": "ghost", "item_id": 1},
            f"unknown user id 'ghost' (not among the {N_USERS} trained users)",
        ),
        (
            {"query_type": "contextual", "user_id": 1, "item_id": -5},
            f"unknown item id -5 (not in the {N_ITEMS} trained items)",
        ),
    ],
    ids=["item_to_item-int", "item_to_item-str", "sequential", "contextual-user", "contextual-item"],
)
def test_unknown_ids_are_404_naming_the_id(client, body, detail):
    check_404(client.post("/recommend", json=body), detail)


def test_unknown_item_with_text_but_no_text_cold_start_says_how_to_enable_it(client):
    response = client.post(
        "/recommend", json={"query_type": "item_to_item", "item_id": 0, "item_text": "space"}
    )
    assert response.status_code == 404
    assert "unknown item id 0" in response.json()["detail"]
    assert "bert4rec serve --text-cold-start" in response.json()["detail"]
    response = client.post("/recommend", json={"query_type": "item_to_item", "item_text": "space"})
    check_422(response, ["body", "item_text"], "item_text needs text cold start, which is not enabled")


UNION = "user_to_item"  # pydantic puts the tag of the matched query type into `loc`


@pytest.mark.parametrize(
    ("body", "loc", "msg", "kind"),
    [
        (
            {"query_type": "most_popular", "user_id": 1},
            ["body"],
            "Input tag 'most_popular' found using 'query_type' does not match any of the expected tags: "
            "'item_to_item', 'user_to_item', 'contextual', 'sequential'",
            "union_tag_invalid",
        ),
        (
            {"user_id": 1},
            ["body"],
            "Unable to extract tag using discriminator 'query_type'",
            "union_tag_not_found",
        ),
        (
            {"query_type": "sequential", "item_ids": []},
            ["body", "sequential", "item_ids"],
            "List should have at least 1 item after validation, not 0",
            "too_short",
        ),
        (
            {"query_type": "sequential", "session_items": []},
            ["body", "sequential", "session_items"],
            "List should have at least 1 item after validation, not 0",
            "too_short",
        ),
        (
            {"query_type": "sequential"},
            ["body", "sequential", "session_items"],
            "Field required",
            "missing",
        ),
        (
            {"query_type": "sequential", "item_ids": list(range(10_001))},
            ["body", "sequential", "item_ids"],
            "List should have at most 10000 items",
            "too_long",
        ),
        (
            {"query_type": UNION, "user_id": 1, "top_k": 0},
            ["body", UNION, "top_k"],
            "greater than or equal to 1",
            None,
        ),
        (
            {"query_type": UNION, "user_id": 1, "top_k": 1001},
            ["body", UNION, "top_k"],
            "Input should be less than or equal to 1000",
            "less_than_equal",
        ),
        (
            {"query_type": UNION, "user_id": 1, "top_k": "10"},
            ["body", UNION, "top_k"],
            "valid integer",
            "int_type",
        ),
        (
            {"query_type": UNION, "user_id": 1, "top_k": 2.5},
            ["body", UNION, "top_k"],
            "valid integer",
            "int_type",
        ),
        (
            {"query_type": UNION, "user_id": 1, "top_k": True},
            ["body", UNION, "top_k"],
            "valid integer",
            "int_type",
        ),
        (
            {"query_type": UNION, "user_id": 1, "exclude_seen": "yes"},
            ["body", UNION, "exclude_seen"],
            "Input should be a valid boolean",
            "bool_type",
        ),
        (
            {"query_type": UNION, "user_id": 1.5},
            ["body", UNION, "user_id", "int"],
            "valid integer",
            "int_type",
        ),
        (
            {"query_type": UNION, "user_id": None},
            ["body", UNION, "user_id", "int"],
            "valid integer",
            "int_type",
        ),
        (
            {"query_type": UNION, "user_id": ""},
            ["body", UNION, "user_id", "constrained-str"],
            "at least 1 character",
            None,
        ),
        ({"query_type": UNION}, ["body", UNION, "user_id"], "Field required", "missing"),
        (
            {"query_type": "sequential", "item_ids": "1,2,3"},
            ["body", "sequential", "item_ids"],
            "Input should be a valid list",
            "list_type",
        ),
        (
            {"query_type": UNION, "user_id": 1, "k": 5},
            ["body", UNION, "k"],
            "Extra inputs are not permitted",
            "extra_forbidden",
        ),
        (
            {"query_type": "item_to_item"},
            ["body", "item_to_item"],
            "item_to_item needs an item_id, an item_text, or both",
            "value_error",
        ),
        (
            {"query_type": UNION, "user_id": 1, "filters": {"genres": "Comedy"}},
            ["body", UNION, "filters"],
            "filter keys must look like 'meta.<field>' (e.g. 'meta.genres'), got 'genres'",
            "value_error",
        ),
        (
            {"query_type": UNION, "user_id": 1, "filters": {"meta.colour": "red"}},
            ["body", "filters", "meta.colour"],
            "unknown filter field 'meta.colour'; valid fields: meta.genres, meta.title",
            "unknown_filter",
        ),
        (
            {"query_type": "sequential", "item_ids": [1], "filters": {"meta.genres": True}},
            ["body", "filters", "meta.genres"],
            "filter 'meta.genres' expects text, got True (bool)",
            "filter_value",
        ),
        (
            {"query_type": UNION, "user_id": 1, "filters": {"meta.genres": {"$in": ["a"]}}},
            ["body", UNION, "filters", "meta.genres", "bool"],
            "Input should be a valid boolean",
            None,
        ),
        (
            {"query_type": UNION, "user_id": 1, "filters": {"meta.genres": []}},
            ["body", UNION, "filters", "meta.genres", "list[union[bool,int,float,constrained-str]]"],
            "List should have at least 1 item",
            "too_short",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_bad_requests_are_422_with_a_precise_message(client, body, loc, msg, kind):
    check_422(client.post("/recommend", json=body), loc, msg, kind)


def test_malformed_json_is_422(client):
    response = client.post(
        "/recommend", content=b'{"query_type": "sequential", ', headers={"content-type": "application/json"}
    )
    check_422(response, ["body", 29], "JSON decode error", "json_invalid")


def test_a_body_that_is_not_utf8_is_400(client):
    response = client.post("/recommend", content=b"\xff\xfe{", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"detail": "There was an error parsing the body"}


@pytest.mark.parametrize("content", [b"", b"[1, 2]", b'"user_to_item"', b"null"])
def test_a_body_that_is_not_a_query_object_is_422(client, content):
    response = client.post("/recommend", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_wrong_method_and_path(client):
    assert client.get("/recommend").status_code == 405
    assert client.post("/recommendations", json={}).status_code == 404
