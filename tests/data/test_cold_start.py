"""Holding items out of training for the cold-start benchmark (`bert4rec.data.cold_start`)."""

from __future__ import annotations

import numpy as np
import pytest

from bert4rec.data.cold_start import choose_cold_items, cold_users, hold_out_items


@pytest.fixture(scope="module")
def held(tiny_prepared):
    split = tiny_prepared.split
    cold = choose_cold_items(split, 0.2, seed=3)
    return split, cold, hold_out_items(split, cold)


def test_choice_is_seeded_and_sized(tiny_prepared):
    split = tiny_prepared.split
    a = choose_cold_items(split, 0.1, seed=1)
    assert np.array_equal(a, choose_cold_items(split, 0.1, seed=1))
    assert not np.array_equal(a, choose_cold_items(split, 0.1, seed=2))
    assert len(a) == round(0.1 * split.n_items) and len(set(a)) == len(a)
    assert a.min() >= 1 and a.max() <= split.n_items and np.all(np.diff(a) > 0)
    with pytest.raises(ValueError, match="share"):
        choose_cold_items(split, 1.0, seed=0)


def test_no_held_out_item_appears_in_any_input(held):
    split, cold, out = held
    assert split.users("test").tolist() == out.users("test").tolist()
    for seq in out.train:
        assert not np.isin(seq, cold).any()
    for which in ("val", "test"):
        for history in out.inputs(which):
            assert not np.isin(history, cold).any()
    assert not np.isin(out.val_target, cold).any()  # model selection never sees them either
    assert not np.isin(np.concatenate(out.train), cold).any()
    assert (out.item_popularity()[cold] == 0).all()


def test_everything_else_is_kept(held):
    split, cold, out = held
    assert np.array_equal(out.test_target, split.test_target)
    for original, kept in zip(split.train, out.train, strict=True):
        assert kept.tolist() == [i for i in original.tolist() if i not in set(cold.tolist())]  # order kept
    changed = out.val_target != split.val_target
    assert np.isin(split.val_target[changed], cold).all() and (out.val_target[changed] == 0).all()
    assert out.vocab is split.vocab and out.n_items == split.n_items  # items stay in the catalogue
    assert out.stats["held_out_items"] == len(cold)
    assert out.stats["held_out_train_interactions"] == sum(np.isin(s, cold).sum() for s in split.train)
    assert out.fingerprint != split.fingerprint


def test_the_input_split_is_not_modified(tiny_prepared):
    split = tiny_prepared.split
    train = [s.copy() for s in split.train]
    val, test, stats = split.val_target.copy(), split.test_target.copy(), dict(split.stats)
    hold_out_items(split, choose_cold_items(split, 0.3, seed=0))
    assert all(np.array_equal(a, b) for a, b in zip(train, split.train, strict=True))
    assert np.array_equal(val, split.val_target) and np.array_equal(test, split.test_target)
    assert split.stats == stats


def test_cold_users_are_those_with_a_held_out_test_target(held):
    split, cold, out = held
    users = cold_users(out, cold)
    assert len(users) > 0 and out.stats["cold_test_users"] == len(users)
    assert np.isin(out.test_target[users], cold).all()
    warm = np.setdiff1d(out.users("test"), users)
    assert not np.isin(out.test_target[warm], cold).any()
