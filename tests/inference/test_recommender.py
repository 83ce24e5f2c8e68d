import pytest

from bert4rec.errors import QueryError, UnknownIdError
from bert4rec.inference.recommender import Recommender


@pytest.fixture(scope="module")
def rec(tiny_artifact):
    return Recommender.load(tiny_artifact)


def test_user_recommendations_exclude_history_and_carry_titles(rec):
    user = rec.vocab.user_ids[0]
    history = set(rec.history(user))
    result = rec.user_to_item(user, k=5)
    assert result.path == "model" and len(result.items) == 5
    assert [r.rank for r in result.items] == [1, 2, 3, 4, 5]
    assert not history & {r.item_id for r in result.items}
    assert all(r.title and r.title.startswith("Item ") for r in result.items)
    assert all("genres" in r.metadata for r in result.items)
    scores = [r.score for r in result.items]
    assert scores == sorted(scores, reverse=True)


def test_include_seen_allows_history_items(rec):
    user = rec.vocab.user_ids[0]
    k = rec.vocab.n_items
    assert len(rec.user_to_item(user, k=k, filter_seen=False).items) == k
    assert len(rec.user_to_item(user, k=k).items) == k - len(rec.history(user))


def test_unknown_user_falls_back_to_popularity(rec):
    result = rec.user_to_item("nobody", k=3)
    assert result.path == "popularity"
    pop = rec.bundle.popularity
    assert rec.vocab.item_idx(result.items[0].item_id) == int(pop.argmax())


def test_session_recommendations_and_unknown_items(rec):
    items = rec.vocab.item_ids[:3]
    result = rec.sequential(items, k=4)
    assert result.path == "model" and len(result.items) == 4
    assert not set(items) & {r.item_id for r in result.items}
    # ids typed as strings (CLI, JSON) are accepted
    assert rec.sequential([str(i) for i in items], k=4).items == result.items
    with pytest.raises(UnknownIdError, match="unknown item id 'zzz'"):
        rec.sequential(["zzz"])
    with pytest.raises(QueryError, match="the session is empty"):
        rec.sequential([], k=2)


def test_long_sessions_are_truncated_and_flagged(rec):
    long = rec.vocab.item_ids[: rec.max_len + 5]
    assert rec.sequential(long, k=2).truncated
    assert not rec.sequential(long[:3], k=2).truncated
