"""Recommender.search_items: the picker behind GET /items?query= and the demo page."""

from __future__ import annotations

import pytest

from bert4rec.errors import QueryError
from bert4rec.inference.recommender import Recommender


@pytest.fixture(scope="module")
def rec(tiny_artifact):
    return Recommender.load(tiny_artifact)


def test_exact_id_first_then_title_prefix_then_contains(rec):
    item_id = rec.vocab.item_ids[4]  # titles look like "Item 5 (Genre0)"
    found = rec.search_items(str(item_id), limit=60)
    assert found[0]["item_id"] == item_id
    assert all(str(item_id) in f["title"] or str(item_id) in str(f["item_id"]) for f in found[1:])
    prefix = rec.search_items("ITEM 1", limit=60)  # case-insensitive; "Item 1", "Item 10".. start with it
    assert prefix and all(p["title"].lower().startswith("item 1") for p in prefix)


def test_payload_and_popularity_order(rec):
    found = rec.search_items("", limit=5)
    assert len(found) == 5
    assert set(found[0]) == {"item_id", "title", "metadata"} and "title" not in found[0]["metadata"]
    counts = [rec.bundle.popularity[rec.vocab.item_idx(f["item_id"])] for f in found]
    assert counts == sorted(counts, reverse=True)
    assert rec.item_summary(found[0]["item_id"]) == found[0]


def test_no_match_and_bad_limit(rec):
    assert rec.search_items("zzz-no-such-thing") == []
    with pytest.raises(QueryError, match="limit"):
        rec.search_items("item", limit=0)
