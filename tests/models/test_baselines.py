import sys
from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from pydantic import ValidationError

from bert4rec.config import DataConfig
from bert4rec.data.interactions import generate_interactions, preprocess
from bert4rec.data.sequences import SequenceSplit, build_split
from bert4rec.data.vocab import Vocab
from bert4rec.errors import NotFittedError
from bert4rec.models import baselines
from bert4rec.models.base import Scorer
from bert4rec.models.baselines import (
    ItemKNNRecommender,
    MFRecommender,
    PopularityRecommender,
    history_matrix,
)

Baseline = PopularityRecommender | ItemKNNRecommender | MFRecommender

FACTORIES: dict[str, Callable[[], Baseline]] = {
    "popularity": PopularityRecommender,
    "item_knn": lambda: ItemKNNRecommender(k_neighbors=20, recency_decay=0.9),
    "mf": lambda: MFRecommender(factors=8, iterations=5, num_threads=2),
}


def hand_split(train: list[list[int]], n_items: int) -> SequenceSplit:
    """A SequenceSplit straight from training sequences (no validation or test targets)."""
    n_users = len(train)
    return SequenceSplit(
        Vocab([f"i{i}" for i in range(1, n_items + 1)], list(range(n_users))),
        [np.asarray(t, dtype=np.int64) for t in train],
        np.zeros(n_users, dtype=np.int64),
        np.zeros(n_users, dtype=np.int64),
        {},
    )


@pytest.fixture(scope="module")
def split() -> SequenceSplit:
    cfg = DataConfig(dataset="generated", n_users=120, n_items=50)
    return build_split(preprocess(generate_interactions(cfg.n_users, cfg.n_items, cfg.seed), cfg))


# ------------------------------------------------------------------------------------ shared contract


@pytest.fixture(params=sorted(FACTORIES))
def factory(request) -> Callable[[], Baseline]:
    return FACTORIES[request.param]


def test_scores_have_the_scorer_contract(factory, split):
    model = factory()
    assert isinstance(model, Scorer) and model.name in FACTORIES
    assert model.fit(split) is model
    users = split.users("test")[:7]
    scores = model.score(users, split.inputs("test", users))
    assert scores.shape == (7, split.n_items + 1) and scores.dtype == torch.float32
    assert torch.isneginf(scores[:, 0]).all()
    assert torch.isfinite(scores[:, 1:]).all()


def test_two_fits_give_identical_scores(factory, split):
    users = split.users("test")[:16]
    histories = split.inputs("test", users)
    first = factory().fit(split).score(users, histories)
    second = factory().fit(split).score(users, histories)
    assert torch.equal(first, second)


def test_score_before_fit_says_to_call_fit(factory, split):
    with pytest.raises(NotFittedError, match=r"call fit"):
        factory().score(np.array([0]), [split.train[0]])


def test_empty_history_and_empty_batch_are_scored(factory, split):
    model = factory().fit(split)
    scores = model.score(np.array([-1, 0]), [np.array([], dtype=np.int64), split.train[0]])
    assert scores.shape == (2, split.n_items + 1)
    assert torch.isfinite(scores[:, 1:]).all() and torch.isneginf(scores[:, 0]).all()
    assert model.score(np.array([], dtype=np.int64), []).shape == (0, split.n_items + 1)


def test_only_training_sequences_are_used(factory, split):
    """Changing the validation and test targets must not change a fitted model."""
    shuffled = SequenceSplit(
        split.vocab, split.train, split.val_target[::-1].copy(), split.test_target[::-1].copy(), split.stats
    )
    users = split.users("test")[:8]
    histories = split.inputs("test", users)
    assert torch.equal(
        factory().fit(split).score(users, histories), factory().fit(shuffled).score(users, histories)
    )


def test_config_round_trips(factory):
    model = factory()
    config = model.get_config()
    assert type(model)(**config).get_config() == config


def test_out_of_range_history_items_are_rejected(factory, split):
    model = factory().fit(split)
    with pytest.raises(ValueError, match=r"outside 0\.\.\d+.*vocabulary"):
        model.score(np.array([0]), [np.array([1, split.n_items + 1])])


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ItemKNNRecommender(k_neighbors=0), "k_neighbors"),
        (lambda: ItemKNNRecommender(recency_decay=1.5), "recency_decay"),
        (lambda: MFRecommender(factors=0), "factors"),
    ],
)
def test_invalid_hyperparameters_name_the_field(make, field):
    with pytest.raises(ValidationError, match=field):
        make()


# ------------------------------------------------------------------------------------ behaviour oracles


def checkerboard() -> tuple[SequenceSplit, np.ndarray, int, np.ndarray]:
    """Users 0-19 consume items 1-10 only, users 20-39 items 11-20 only; each user misses one item.

    Returns the split, a group-A history that lacks item 1, the held-out item 1, and group B's items.
    """
    group_a, group_b = np.arange(1, 11), np.arange(11, 21)
    train = []
    for u in range(40):
        items = group_a if u < 20 else group_b
        train.append(np.delete(items, u % 10))
    return hand_split(train, 20), group_a[1:], 1, group_b


@pytest.mark.parametrize(
    "make",
    [ItemKNNRecommender, lambda: MFRecommender(factors=4, iterations=10, num_threads=1)],
    ids=["knn", "mf"],
)
def test_held_out_item_of_own_group_beats_the_other_group(make):
    split, history, held_out, other_group = checkerboard()
    scores = make().fit(split).score(np.array([0]), [history])[0]
    assert scores[held_out] > scores[other_group].max()


def test_popularity_ranks_the_most_frequent_item_first():
    split = hand_split([[3, 1], [3, 2], [3, 4], [2, 4], [4]], n_items=5)
    scores = PopularityRecommender().fit(split).score(np.array([0, 1]), [np.array([1]), np.array([])])
    assert torch.equal(scores[0], scores[1])
    assert scores[0, 1:].argsort(descending=True)[:3].tolist() == [2, 3, 1]  # items 3, 4, 2 (0-based + 1)
    assert scores[0, 5] == 0  # never seen in training


def recency_split() -> SequenceSplit:
    # item 1 ~ 10 (3 users), item 2 ~ 20 (2 users): with shrink 1, sim(1, 10) = 3/4 > sim(2, 20) = 2/3
    return hand_split([[1, 10]] * 3 + [[2, 20]] * 2, n_items=20)


def test_recency_decay_favours_neighbours_of_recent_items():
    split = recency_split()
    history = [np.array([1, 2])]  # item 2 is the most recent
    plain = ItemKNNRecommender(shrink=1.0).fit(split).score(np.array([0]), history)[0]
    decayed = ItemKNNRecommender(shrink=1.0, recency_decay=0.5).fit(split).score(np.array([0]), history)[0]
    assert plain[10] == pytest.approx(0.75) and plain[20] == pytest.approx(2 / 3)
    assert plain[10] > plain[20]
    assert decayed[20] > decayed[10]
    assert decayed[10] == pytest.approx(0.75 * 0.5)


def test_history_matrix_counts_each_item_once_at_its_most_recent_position():
    m = history_matrix([np.array([3, 1, 3, 2]), np.array([], dtype=np.int64)], n_cols=5, decay=0.5)
    assert isinstance(m, sp.csr_matrix) and m.shape == (2, 5)
    np.testing.assert_allclose(m.toarray()[0], [0, 0.25, 1, 0.5, 0])
    np.testing.assert_array_equal(history_matrix([np.array([2, 2, 0])], n_cols=3).toarray(), [[0, 0, 1]])


# ------------------------------------------------------------------------------------ item-KNN details


def test_item_knn_matches_dense_cosine_with_shrink(split):
    knn = ItemKNNRecommender(k_neighbors=split.n_items, shrink=5.0).fit(split)
    x = history_matrix(split.train, split.n_items + 1).toarray().astype(np.float64)
    co = x.T @ x
    norms = np.sqrt(np.diag(co))
    expected = co / (np.outer(norms, norms) + 5.0)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(knn.similarity.toarray(), expected, rtol=1e-5, atol=1e-7)


def test_item_knn_keeps_top_k_sparse_neighbours_in_any_block_size(split, monkeypatch):
    whole = ItemKNNRecommender(k_neighbors=5).fit(split).similarity
    assert isinstance(whole, sp.csr_matrix)
    assert np.diff(whole.indptr).max() <= 5 and whole.diagonal().sum() == 0
    monkeypatch.setattr(baselines, "_BLOCK_NNZ", 3 * (split.n_items + 1))  # about 3 item rows per block
    blocked = ItemKNNRecommender(k_neighbors=5).fit(split).similarity
    assert (whole != blocked).nnz == 0


def test_similar_items_are_sorted_and_exclude_the_item_itself():
    knn = ItemKNNRecommender(shrink=1.0).fit(recency_split())
    items, sims = knn.similar_items(1, k=5)
    assert items.tolist() == [10] and sims[0] == pytest.approx(0.75)
    split, _, _, _ = checkerboard()
    items, sims = ItemKNNRecommender().fit(split).similar_items(3, k=4)
    assert len(items) == 4 and 3 not in items and set(items.tolist()) <= set(range(1, 11))
    assert np.all(np.diff(sims) <= 0)
    with pytest.raises(ValueError, match="outside 1..20"):
        knn.similar_items(0)


# ------------------------------------------------------------------------------------ MF details


def test_mf_folds_in_the_given_history_with_the_exact_als_solution(split):
    mf = MFRecommender(factors=6, iterations=4, regularization=0.1, alpha=3.0, num_threads=1).fit(split)
    history = split.inputs("test", np.array([5]))[0]
    y = mf.item_factors.double().numpy()
    items = np.unique(history)
    # x = (Y^T C Y + reg I)^-1 Y^T C p with C = 1 + (alpha - 1) on observed items, p = 1 on observed
    a = y.T @ y + 0.1 * np.eye(6) + (3.0 - 1.0) * y[items].T @ y[items]
    b = 3.0 * y[items].sum(axis=0)
    expected = np.linalg.solve(a, b)
    np.testing.assert_allclose(mf.user_factors([history])[0].numpy(), expected, rtol=1e-3, atol=1e-4)
    scores = mf.score(np.array([5, 5]), [history, history[:3]])
    assert not torch.equal(scores[0], scores[1])  # scored from the history, not from the user index


def test_mf_without_implicit_says_what_to_install(monkeypatch, split):
    monkeypatch.setitem(sys.modules, "implicit.cpu.als", None)
    with pytest.raises(ImportError, match="pip install 'implicit"):
        MFRecommender().fit(split)
