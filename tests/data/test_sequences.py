"""Leave-one-out split: targets, inputs, and proof that the test interaction never leaks into any input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from bert4rec.config import DataConfig
from bert4rec.data.interactions import RawData, generate_interactions, preprocess
from bert4rec.data.sequences import build_split

ALL = DataConfig(dataset="generated", min_user_interactions=1, min_item_interactions=1, duplicates="keep")


def split_of(rows: list[tuple], cfg: DataConfig = ALL, val_users: int | None = None):
    raw = RawData(pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row"), None, "t")
    return build_split(preprocess(raw, cfg), val_users)


def test_leave_one_out_on_a_small_example():
    # user "u" in file order: d@4, a@1, b@2, c@2 (tie: b before c) -> time order a, b, c, d
    s = split_of([("u", "d", 4), ("u", "a", 1), ("v", "a", 1), ("u", "b", 2), ("u", "c", 2), ("v", "b", 2)])
    v = s.vocab
    assert v.user_ids == ["u", "v"] and v.item_ids == ["a", "b", "c", "d"]
    u = v.user_idx("u")
    assert v.decode_items(s.train[u]) == ["a", "b"]
    assert v.decode_items([s.val_target[u]]) == ["c"] and v.decode_items([s.test_target[u]]) == ["d"]
    assert [v.decode_items(x) for x in s.inputs("val")] == [["a", "b"]]
    assert [v.decode_items(x) for x in s.inputs("test")] == [["a", "b", "c"]]
    # v has 2 interactions: training only, no targets
    assert v.decode_items(s.train[v.user_idx("v")]) == ["a", "b"]
    assert s.val_target[v.user_idx("v")] == 0 and s.test_target[v.user_idx("v")] == 0
    assert s.users("val").tolist() == s.users("test").tolist() == [u]
    assert s.stats["users_train_only"] == 1


def test_users_with_fewer_than_three_interactions_are_train_only_and_counted():
    rows = [(1, 10, 1)] + [(2, 10, 1), (2, 11, 2)] + [(3, 10, 1), (3, 11, 2), (3, 12, 3)]
    s = split_of(rows)
    assert [len(t) for t in s.train] == [1, 2, 1]
    assert s.val_target.tolist()[:2] == [0, 0] and s.test_target.tolist()[:2] == [0, 0]
    assert s.users("test").tolist() == [2]
    assert s.stats["users_train_only"] == 2
    pop = s.item_popularity()
    assert pop[0] == 0 and pop.sum() == 4  # only training parts count: 1 + 2 + 1


def _reference_sequences(rows: list[tuple]) -> dict:
    """Each user's (item, file_row) list in time order, ties in file order, built without the library."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i][0], rows[i][2]))  # stable
    out: dict = {}
    for i in order:
        out.setdefault(rows[i][0], []).append((rows[i][1], i))
    return out


def _shuffled_rows_with_repeats_and_ties() -> list[tuple]:
    rng = np.random.default_rng(7)
    rows = []
    for u in range(300):
        n = int(rng.integers(1, 25))
        items = rng.integers(1, 15, n)  # 14 items only: repeats are common
        times = np.sort(rng.integers(0, 8, n))  # few distinct times: ties are common
        rows += [(u, int(i), int(t)) for i, t in zip(items, times, strict=True)]
    perm = rng.permutation(len(rows))
    return [rows[i] for i in perm]  # shuffle the file: order must come from (time, file row)


def test_test_interaction_never_appears_in_any_training_or_validation_input():
    """The proof. Items repeat inside histories, many timestamps tie and rows arrive shuffled, so the
    claim is about *positions*: every input is a strict prefix of the time-ordered history that stops
    before the last interaction, and the test target is that last interaction."""
    rows = _shuffled_rows_with_repeats_and_ties()
    s = split_of(rows)
    ref = _reference_sequences(rows)
    v = s.vocab
    val_users, test_users = s.users("val"), s.users("test")
    val_inputs, test_inputs = (
        dict(zip(val_users, s.inputs("val"), strict=True)),
        dict(zip(test_users, s.inputs("test"), strict=True)),
    )
    n_checked = n_repeat_targets = 0
    for user, seq in ref.items():
        u = v.user_idx(user)
        items = [item for item, _ in seq]
        encoded = v.encode_items(items)
        if len(seq) < 3:
            assert u not in test_users and s.test_target[u] == 0
            assert s.train[u].tolist() == encoded.tolist()
            continue
        n_checked += 1
        # the test target is the last interaction, the validation target the second last
        assert s.test_target[u] == encoded[-1] and s.val_target[u] == encoded[-2]
        # position-wise: training = history minus the last two, val input = training,
        # test input = history minus exactly the last interaction
        assert s.train[u].tolist() == encoded[:-2].tolist()
        assert val_inputs[u].tolist() == encoded[:-2].tolist()
        assert test_inputs[u].tolist() == encoded[:-1].tolist()
        assert len(test_inputs[u]) == len(seq) - 1 and len(val_inputs[u]) == len(seq) - 2
        # value-wise, where it is meaningful: if the last item was never consumed before, it is in no input
        if items[-1] not in items[:-1]:
            assert s.test_target[u] not in s.train[u] and s.test_target[u] not in val_inputs[u]
            assert s.test_target[u] not in test_inputs[u]
        else:
            n_repeat_targets += 1
    assert n_checked > 200 and n_repeat_targets > 20  # the data really exercises repeats
    assert s.stats["users_train_only"] == sum(len(seq) < 3 for seq in ref.values())


def test_no_leak_on_generated_data_value_wise():
    """Generated histories have no repeats, so the stronger value claim holds for every user."""
    cfg = DataConfig(dataset="generated", min_user_interactions=3, min_item_interactions=1)
    s = build_split(preprocess(generate_interactions(200, 80, seed=5), cfg))
    users = s.users("test")
    assert len(users) == s.vocab.n_users
    for u, val_in, test_in in zip(users, s.inputs("val", users), s.inputs("test", users), strict=True):
        target = s.test_target[u]
        assert target not in s.train[u] and target not in val_in and target not in test_in
        assert s.val_target[u] not in val_in


@pytest.mark.parametrize("split", ["val", "test"])
def test_inputs_for_an_explicit_user_subset(split):
    s = split_of([(1, 10, 1), (1, 11, 2), (1, 12, 3), (1, 13, 4), (2, 10, 1), (2, 12, 2), (2, 13, 3)])
    both = s.inputs(split)
    only_second = s.inputs(split, np.array([1]))
    assert len(only_second) == 1 and only_second[0].tolist() == both[1].tolist()


def test_val_users_trains_the_other_users_on_their_validation_item_and_never_on_the_test_item():
    rows = _shuffled_rows_with_repeats_and_ties()
    full, part, again = split_of(rows), split_of(rows, val_users=40), split_of(rows, val_users=40)
    assert part.users("val").tolist() == again.users("val").tolist()  # a fixed sample
    # the same test users and targets, the same test inputs; 40 of them validate
    assert part.users("test").tolist() == full.users("test").tolist()
    assert (part.test_target == full.test_target).all()
    assert len(part.users("val")) == 40 == part.stats["users_validated"]
    assert set(part.users("val").tolist()) < set(full.users("val").tolist())
    for a, b in zip(part.inputs("test"), full.inputs("test"), strict=True):
        assert a.tolist() == b.tolist()
    validated = set(part.users("val").tolist())
    for u in full.users("test"):
        history = np.append(full.inputs("test", np.array([u]))[0], full.test_target[u])
        if u in validated:  # as the full split: the last two stay out of training
            assert part.train[u].tolist() == history[:-2].tolist() and part.val_target[u] == history[-2]
        else:  # the validation item trains, the test item never does
            assert part.train[u].tolist() == history[:-1].tolist() and part.val_target[u] == 0
    assert part.stats["users_train_only"] == full.stats["users_train_only"]
    assert part.item_popularity().sum() == full.item_popularity().sum() + len(full.users("test")) - 40
    # more users than there are: every user validates, as without the option
    assert split_of(rows, val_users=10_000).users("val").tolist() == full.users("val").tolist()
