"""The four query types of the Recommender facade, with filters and seen-item filtering."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bert4rec.errors import ContentUnavailableError, FilterError, QueryError, UnknownIdError
from bert4rec.inference.recommender import Recommender


@pytest.fixture(scope="module")
def rec(tiny_artifact):
    return Recommender.load(tiny_artifact)


def ids(result):
    return [r.item_id for r in result.items]


def genre_of(rec, item_id):
    return rec.item_info(item_id)["genres"]


# ---------------------------------------------------------------- item_to_item
def test_item_to_item_ranks_by_cosine_of_output_item_vectors(rec):
    item = rec.vocab.item_ids[4]
    result = rec.item_to_item(item, k=5)
    assert result.path == "item_vectors" and len(result.items) == 5
    assert item not in ids(result)
    w = F.normalize(rec.bundle.model.item_weights().detach().float(), dim=1)
    cos = w @ w[rec.vocab.item_idx(item)]
    cos[[0, rec.vocab.item_idx(item)]] = -2
    expected = torch.topk(cos, 5).indices.tolist()
    assert [rec.vocab.item_idx(i) for i in ids(result)] == expected
    assert [r.score for r in result.items] == pytest.approx(cos[expected].tolist(), abs=1e-5)


def test_item_to_item_excludes_the_item_even_without_seen_filtering(rec):
    item = rec.vocab.item_ids[0]
    assert item not in ids(rec.item_to_item(item, k=rec.vocab.n_items, filter_seen=False))


def test_item_to_item_accepts_ids_as_strings_and_errors_name_the_id(rec):
    item = rec.vocab.item_ids[2]
    assert ids(rec.item_to_item(str(item), k=3)) == ids(rec.item_to_item(item, k=3))
    with pytest.raises(UnknownIdError, match="unknown item id 'nope'"):
        rec.item_to_item("nope")
    with pytest.raises(QueryError, match="needs an item_id or an item_text"):
        rec.item_to_item()


def test_item_text_without_text_cold_start_is_refused_clearly(rec):
    with pytest.raises(UnknownIdError, match=r"unknown item id 'nope'.*text cold start .* not enabled"):
        rec.item_to_item("nope", item_text="space opera")
    with pytest.raises(ContentUnavailableError, match="not enabled"):
        rec.item_to_item(item_text="space opera")


# ---------------------------------------------------------------- user_to_item
def test_user_to_item_uses_the_model_and_hides_the_history(rec):
    user = rec.vocab.user_ids[3]
    result = rec.user_to_item(user, k=5)
    assert result.path == "model" and len(result.items) == 5
    assert not set(rec.history(user)) & set(ids(result))
    assert result.history_length == len(rec.history(user))
    assert result.used_length == min(result.history_length, rec.max_history)


def test_unknown_user_gets_popularity_with_filters(rec):
    genre = genre_of(rec, rec.vocab.item_ids[0])
    result = rec.user_to_item("no-such-user", k=3, filters={"genres": genre})
    assert result.path == "popularity"
    pop = rec.bundle.popularity.copy()
    candidates = [i for i in rec.vocab.item_ids if genre_of(rec, i) == genre]
    best = max(candidates, key=lambda i: pop[rec.vocab.item_idx(i)])
    assert pop[rec.vocab.item_idx(ids(result)[0])] == pop[rec.vocab.item_idx(best)]
    assert all(genre_of(rec, i) == genre for i in ids(result))


def test_exclude_seen_off_lets_history_items_back(rec):
    user = rec.vocab.user_ids[0]
    everything = rec.user_to_item(user, k=rec.vocab.n_items, filter_seen=False)
    assert len(everything.items) == rec.vocab.n_items
    assert len(rec.user_to_item(user, k=rec.vocab.n_items).items) == rec.vocab.n_items - len(
        set(rec.history(user))
    )


# ---------------------------------------------------------------- contextual
def test_contextual_is_the_history_with_the_current_item_appended(rec):
    user = rec.vocab.user_ids[5]
    current = rec.vocab.item_ids[-1]
    result = rec.contextual(user, current, k=6)
    same = rec.sequential([*rec.history(user), current], k=6)  # no user embedding in the tiny model
    assert ids(result) == ids(same)
    assert [r.score for r in result.items] == pytest.approx([r.score for r in same.items])
    assert result.path == "model" and current not in ids(result)
    assert result.history_length == len(rec.history(user)) + 1


def test_contextual_unknown_ids_raise(rec):
    with pytest.raises(UnknownIdError, match="unknown user id 'ghost'"):
        rec.contextual("ghost", rec.vocab.item_ids[0])
    with pytest.raises(UnknownIdError, match="unknown item id 'nope'"):
        rec.contextual(rec.vocab.user_ids[0], "nope")


# ---------------------------------------------------------------- sequential
def test_sequential_session(rec):
    session = rec.vocab.item_ids[10:13]
    result = rec.sequential(session, k=4)
    assert result.path == "model" and len(result.items) == 4
    assert not set(session) & set(ids(result))
    assert not result.truncated and result.used_length == 3


def test_sequential_truncates_long_sessions_to_the_most_recent_items(rec):
    long = list(rec.vocab.item_ids) * 2
    assert len(long) > rec.max_history
    result = rec.sequential(long, k=3, filter_seen=False)
    assert result.truncated and result.history_length == len(long)
    assert result.used_length == rec.max_history
    recent = rec.sequential(long[-rec.max_history :], k=3, filter_seen=False)
    assert ids(result) == ids(recent) and not recent.truncated


def test_sequential_refuses_empty_sessions_and_unknown_items(rec):
    with pytest.raises(QueryError, match="the session is empty"):
        rec.sequential([])
    with pytest.raises(UnknownIdError, match="unknown item id 'zzz'"):
        rec.sequential([rec.vocab.item_ids[0], "zzz"])


# ---------------------------------------------------------------- filters and k, all query types
QUERIES = {
    "item_to_item": lambda rec, **kw: rec.item_to_item(rec.vocab.item_ids[0], **kw),
    "user_to_item": lambda rec, **kw: rec.user_to_item(rec.vocab.user_ids[0], **kw),
    "contextual": lambda rec, **kw: rec.contextual(rec.vocab.user_ids[0], rec.vocab.item_ids[1], **kw),
    "sequential": lambda rec, **kw: rec.sequential(rec.vocab.item_ids[:2], **kw),
}


@pytest.mark.parametrize("query", QUERIES)
def test_filters_apply_to_every_query_type(rec, query):
    genres = sorted({genre_of(rec, i) for i in rec.vocab.item_ids})
    wanted = genres[1]
    result = QUERIES[query](rec, k=50, filters={"genres": wanted})
    assert result.items and all(genre_of(rec, i) == wanted for i in ids(result))
    assert all(r.metadata["genres"] == wanted for r in result.items)
    # a list means any of its values
    both = QUERIES[query](rec, k=50, filters={"genres": genres[:2]})
    assert {genre_of(rec, i) for i in ids(both)} <= set(genres[:2])
    assert QUERIES[query](rec, k=5, filters={"genres": "no such genre"}).items == []


@pytest.mark.parametrize("query", QUERIES)
def test_unknown_filter_fields_and_bad_k_are_refused(rec, query):
    with pytest.raises(FilterError, match="unknown filter field 'colour'; valid fields: genres, title"):
        QUERIES[query](rec, filters={"colour": "red"})
    with pytest.raises(QueryError, match="k must be a positive integer, got 0"):
        QUERIES[query](rec, k=0)


def test_titles_are_strings_and_scores_descend(rec):
    for make in QUERIES.values():
        result = make(rec, k=8)
        assert all(isinstance(r.title, str) and r.title.startswith("Item ") for r in result.items)
        scores = [r.score for r in result.items]
        assert scores == sorted(scores, reverse=True) and np.isfinite(scores).all()
        assert [r.rank for r in result.items] == list(range(1, len(scores) + 1))


def test_health_facts(rec):
    assert rec.model_type == "bert4rec"
    assert rec.max_history == rec.max_len - 1
    assert len(rec.fingerprint) == 16
    assert rec.fingerprint == rec.bundle.manifest["files"]["model.safetensors"][:16]
    assert rec.filter_fields == ["genres", "title"]
