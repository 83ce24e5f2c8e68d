from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from bert4rec.config import EvalConfig
from bert4rec.data.sequences import SequenceSplit
from bert4rec.data.vocab import Vocab
from bert4rec.evaluation.evaluator import MODES, EvaluationError, Evaluator
from bert4rec.models.base import Scorer


def make_split(sequences: Sequence[Sequence[int]], n_items: int) -> SequenceSplit:
    """Leave-one-out split built by hand: last item = test, second last = val (users with >= 3 items)."""
    train, val, test = [], [], []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq) >= 3:
            train.append(seq[:-2])
            val.append(seq[-2])
            test.append(seq[-1])
        else:
            train.append(seq)
            val.append(0)
            test.append(0)
    vocab = Vocab([f"i{j}" for j in range(1, n_items + 1)], [f"u{u}" for u in range(len(sequences))])
    return SequenceSplit(vocab, train, np.array(val, dtype=np.int64), np.array(test, dtype=np.int64), {})


def random_split(
    n_users: int,
    n_items: int,
    seed: int = 0,
    lengths: tuple[int, int] = (4, 20),
    skew: float = 1.0,
    repeats: bool = False,
) -> SequenceSplit:
    """Sequences drawn with Zipf-like item popularity (item 1 most popular)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1) ** skew
    p /= p.sum()
    seqs = [
        rng.choice(n_items, size=rng.integers(*lengths, endpoint=True), replace=repeats, p=p) + 1
        for _ in range(n_users)
    ]
    return make_split(seqs, n_items)


class OracleScorer:
    """Scores the held-out target highest (and everything else 0)."""

    name = "oracle"

    def __init__(self, split: SequenceSplit, which: str = "test", extra: dict[int, float] | None = None):
        self.targets = split.targets_all(which)
        self.n_items = split.n_items
        self.extra = extra or {}

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        scores = torch.zeros(len(users), self.n_items + 1)
        for col, value in self.extra.items():
            scores[:, col] = value
        scores[torch.arange(len(users)), torch.as_tensor(self.targets[users])] = 1.0
        return scores


class ConstantScorer:
    name = "constant"

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.ones(len(users), self.n_items + 1)


class RandomScorer:
    name = "random"

    def __init__(self, n_items: int, seed: int = 0) -> None:
        self.n_items = n_items
        self.gen = torch.Generator().manual_seed(seed)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.rand(len(users), self.n_items + 1, generator=self.gen)


class FixedScorer:
    """Same item scores for every user (like popularity); can answer with numpy or its own tensor."""

    name = "fixed"

    def __init__(self, item_scores: np.ndarray, as_numpy: bool = False) -> None:
        self.item_scores = torch.as_tensor(item_scores, dtype=torch.float32)
        self.as_numpy = as_numpy

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor | np.ndarray:
        scores = self.item_scores.expand(len(users), -1)  # a view of the scorer's own tensor
        return scores.numpy() if self.as_numpy else scores


@pytest.fixture(scope="module")
def split() -> SequenceSplit:
    return random_split(120, 300, seed=1)


def cfg(**kw: object) -> EvalConfig:
    return EvalConfig(**kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- output and protocol


def test_output_has_every_mode_coverage_long_tail_and_protocol(split):
    out = Evaluator(split, cfg()).evaluate(RandomScorer(split.n_items), which="test")
    assert set(out) == {*MODES, "coverage@10", "long_tail", "n_users", "protocol"}
    assert out["n_users"] == len(split.users("test"))
    for mode in MODES:
        assert {"hr@10", "ndcg@10", "mrr", "recall@10", "precision@10", "hr@1", "ndcg@20"} <= set(out[mode])
        assert all(type(v) is float and 0.0 <= v <= 1.0 for v in out[mode].values())
    assert 0.0 < out["coverage@10"] <= 1.0
    assert set(out["long_tail"]) == {"head", "mid", "tail"}
    assert sum(b["n_users"] for b in out["long_tail"].values()) == out["n_users"]
    protocol = out["protocol"]
    assert protocol["split"] == "test" and protocol["filter_seen"] is True and protocol["n_negatives"] == 100
    assert "pessimistic" in protocol["tie_policy"] and "except the target" in protocol["seen_policy"]


def test_only_requested_modes_are_reported(split):
    out = Evaluator(split, cfg()).evaluate(RandomScorer(split.n_items), modes=("full",))
    assert "full" in out and "sampled_uniform" not in out and "sampled_popularity" not in out
    with pytest.raises(EvaluationError, match="unknown evaluation mode"):
        Evaluator(split, cfg()).evaluate(RandomScorer(split.n_items), modes=("sampled",))  # type: ignore[arg-type]


def test_scorers_in_this_file_follow_the_protocol(split):
    for scorer in (OracleScorer(split), ConstantScorer(1), RandomScorer(1), FixedScorer(np.zeros(2))):
        assert isinstance(scorer, Scorer)


# --------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("filter_seen", [True, False])
@pytest.mark.parametrize("which", ["val", "test"])
def test_oracle_gets_hr1_of_one_in_every_mode(split, which, filter_seen):
    out = Evaluator(split, cfg(filter_seen=filter_seen)).evaluate(OracleScorer(split, which), which=which)
    for mode in MODES:
        assert out[mode]["hr@1"] == 1.0 and out[mode]["ndcg@10"] == 1.0 and out[mode]["mrr"] == 1.0
    assert all(b["hr@10"] in (1.0, None) for b in out["long_tail"].values())


def test_target_is_never_excluded_even_when_it_is_in_the_history():
    split = random_split(80, 30, seed=3, lengths=(10, 25), repeats=True)
    users = split.users("test")
    in_history = [u for u, h in zip(users, split.inputs("test"), strict=True) if split.test_target[u] in h]
    assert len(in_history) > 10  # the case this test is about
    out = Evaluator(split, cfg(filter_seen=True)).evaluate(OracleScorer(split), users=np.array(in_history))
    assert out["full"]["hr@1"] == 1.0 and out["sampled_uniform"]["hr@1"] == 1.0


class HistoryFirstScorer:
    """Scores the first history item 10, the target 5, everything else 0."""

    name = "history_first"

    def __init__(self, split: SequenceSplit) -> None:
        self.split = split

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        scores = torch.zeros(len(users), self.split.n_items + 1)
        for b, (u, h) in enumerate(zip(users, histories, strict=True)):
            scores[b, int(h[0])] = 10.0
            scores[b, int(self.split.test_target[u])] = 5.0
        return scores


def test_seen_items_are_filtered_from_the_full_ranking(split):
    scorer = HistoryFirstScorer(split)  # sequences without repeats: the history item is never the target
    filtered = Evaluator(split, cfg(filter_seen=True)).evaluate(scorer, modes=("full",))
    unfiltered = Evaluator(split, cfg(filter_seen=False)).evaluate(scorer, modes=("full",))
    assert filtered["full"]["hr@1"] == 1.0
    assert unfiltered["full"]["hr@1"] == 0.0 and unfiltered["full"]["hr@5"] == 1.0
    assert unfiltered["protocol"]["filter_seen"] is False


def test_pad_column_is_never_a_candidate(split):
    scorer = OracleScorer(split, extra={0: 100.0})
    out = Evaluator(split, cfg(filter_seen=False)).evaluate(scorer)
    assert out["full"]["hr@1"] == 1.0 and out["sampled_popularity"]["hr@1"] == 1.0


def test_constant_scorer_gets_the_worst_possible_rank(split):
    out = Evaluator(split, cfg(filter_seen=True)).evaluate(ConstantScorer(split.n_items))
    users = split.users("test")
    # candidates = all items minus the (non-target) history items; the target ranks last among them
    n_candidates = np.array(
        [
            split.n_items - len(set(h.tolist()) - {split.test_target[u]})
            for u, h in zip(users, split.inputs("test"), strict=True)
        ]
    )
    assert out["full"]["mrr"] == pytest.approx(np.mean(1.0 / n_candidates))
    assert out["full"]["hr@20"] == 0.0
    for mode in ("sampled_uniform", "sampled_popularity"):
        assert out[mode]["mrr"] == pytest.approx(1 / 101) and out[mode]["hr@10"] == 0.0


def test_random_scorer_is_near_chance_in_sampled_mode():
    split = random_split(3000, 400, seed=5, lengths=(4, 12))
    out = Evaluator(split, cfg()).evaluate(RandomScorer(split.n_items, seed=1))
    assert out["sampled_uniform"]["hr@10"] == pytest.approx(10 / 101, abs=0.03)
    assert out["sampled_popularity"]["hr@10"] == pytest.approx(10 / 101, abs=0.03)
    assert out["full"]["hr@10"] == pytest.approx(10 / 400, abs=0.015)


def test_batching_does_not_change_results(split):
    scorer = FixedScorer(np.random.default_rng(0).random(split.n_items + 1))
    a = Evaluator(split, cfg(batch_size=7)).evaluate(scorer)
    b = Evaluator(split, cfg(batch_size=512)).evaluate(scorer)
    assert a == b


def test_evaluate_ndcg10_matches_the_full_evaluation(split):
    ev = Evaluator(split, cfg())
    scorer = FixedScorer(np.random.default_rng(0).random(split.n_items + 1))
    for which in ("val", "test"):
        assert ev.evaluate_ndcg10(scorer, which=which) == ev.evaluate(scorer, which=which)["full"]["ndcg@10"]
    users = split.users("val")[:10]
    assert ev.evaluate_ndcg10(scorer, "val", users) == ev.evaluate(scorer, "val", users)["full"]["ndcg@10"]


def test_numpy_scores_are_accepted_and_the_scorers_tensor_is_not_modified(split):
    item_scores = np.random.default_rng(0).random(split.n_items + 1)
    scorer = FixedScorer(item_scores)
    before = scorer.item_scores.clone()
    from_tensor = Evaluator(split, cfg()).evaluate(scorer)
    torch.testing.assert_close(scorer.item_scores, before)
    from_numpy = Evaluator(split, cfg()).evaluate(FixedScorer(item_scores, as_numpy=True))
    assert from_tensor == from_numpy


def test_coverage_of_a_non_personalised_scorer(split):
    scorer = FixedScorer(np.arange(split.n_items + 1, dtype=np.float64))
    out = Evaluator(split, cfg(filter_seen=False)).evaluate(scorer, modes=("full",))
    assert out["coverage@10"] == pytest.approx(10 / split.n_items)
    filtered = Evaluator(split, cfg(filter_seen=True)).evaluate(scorer, modes=("full",))
    assert filtered["coverage@10"] > out["coverage@10"]  # seen items are replaced by the next ones


# --------------------------------------------------------------------------- errors


def test_errors_say_what_is_wrong(split):
    ev = Evaluator(split, cfg())

    class WrongShape:
        name = "wrong"

        def score(self, users, histories):
            return torch.zeros(len(users), split.n_items + 2)

    class NaNs:
        name = "nans"

        def score(self, users, histories):
            return torch.full((len(users), split.n_items + 1), float("nan"))

    with pytest.raises(EvaluationError, match=r"'wrong' returned scores of shape .*n_items \+ 1"):
        ev.evaluate(WrongShape())
    with pytest.raises(EvaluationError, match="NaN scores.*diverged"):
        ev.evaluate_ndcg10(NaNs())
    short = make_split([[1, 2, 3, 4], [5, 6]], 6)
    with pytest.raises(EvaluationError, match=r"no test target \(e.g. \[1\]\)"):
        Evaluator(short, cfg()).evaluate(ConstantScorer(6), users=np.array([0, 1]))
    with pytest.raises(EvaluationError, match="'val' or 'test'"):
        ev.evaluate(ConstantScorer(split.n_items), which="train")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- sampled negatives


@pytest.mark.parametrize("mode", ["sampled_uniform", "sampled_popularity"])
@pytest.mark.parametrize("which", ["val", "test"])
def test_negatives_exclude_every_item_of_the_user(split, mode, which):
    ev = Evaluator(split, cfg())
    negs = ev.negatives(which, mode)
    users = split.users(which)
    assert negs.shape == (len(users), 100)
    popularity = split.item_popularity()
    for row, u in zip(negs, users, strict=True):
        known = set(split.train[u].tolist()) | {int(split.val_target[u]), int(split.test_target[u])}
        assert not known & set(row.tolist())
        assert len(set(row.tolist())) == 100 and row.min() >= 1 and row.max() <= split.n_items
        if mode == "sampled_popularity":
            assert (popularity[row] > 0).all()


def test_negatives_are_deterministic_per_seed_and_independent_of_the_user_subset(split):
    for mode in ("sampled_uniform", "sampled_popularity"):
        a = Evaluator(split, cfg(seed=7)).negatives("test", mode)
        b = Evaluator(split, cfg(seed=7)).negatives("test", mode)
        c = Evaluator(split, cfg(seed=8)).negatives("test", mode)
        np.testing.assert_array_equal(a, b)
        assert (a != c).any()
        subset = split.users("test")[[3, 10, 50]]
        again = Evaluator(split, cfg(seed=7)).negatives("test", mode, subset)
        np.testing.assert_array_equal(again, a[[3, 10, 50]])


def test_negatives_are_drawn_once_per_evaluator(split):
    ev = Evaluator(split, cfg())
    first = ev.negatives("test", "sampled_uniform")
    ev.evaluate(RandomScorer(split.n_items))
    np.testing.assert_array_equal(ev.negatives("test", "sampled_uniform"), first)


def test_popularity_sampling_favours_popular_items():
    # 1000 items with Zipf popularity; item 1000 never occurs in training
    split = random_split(400, 1000, seed=2, lengths=(5, 30))
    split.train = [t[t != 1000] for t in split.train]
    pop = split.item_popularity()
    assert pop[1000] == 0
    ev = Evaluator(split, cfg())
    counts = {
        mode: np.bincount(ev.negatives("test", mode).ravel(), minlength=split.n_items + 1)
        for mode in ("sampled_uniform", "sampled_popularity")
    }
    head, tail = np.argsort(-pop[1:], kind="stable")[:50] + 1, np.argsort(-pop[1:], kind="stable")[-300:] + 1
    pop_counts, uni_counts = counts["sampled_popularity"], counts["sampled_uniform"]
    # popular items are drawn far more often with popularity sampling, about equally often with uniform
    assert pop_counts[head].mean() > 10 * pop_counts[tail].mean()
    assert uni_counts[head].mean() < 1.5 * uni_counts[tail].mean()
    # monotone (not linear: without replacement the top items saturate) in training popularity
    seen = np.flatnonzero(pop > 0)
    rank_corr = np.corrcoef(np.argsort(np.argsort(pop_counts[seen])), np.argsort(np.argsort(pop[seen])))[0, 1]
    assert rank_corr > 0.8, rank_corr
    # the average popularity of a negative is much higher
    assert (pop_counts * pop).sum() / pop_counts.sum() > 3 * (uni_counts * pop).sum() / uni_counts.sum()
    assert pop_counts[1000] == 0 and uni_counts[1000] > 0


def test_users_with_too_few_possible_negatives_get_all_of_them():
    split = random_split(30, 20, seed=4, lengths=(4, 8))
    ev = Evaluator(split, cfg())
    negs = ev.negatives("test", "sampled_uniform")
    for row, u in zip(negs, split.users("test"), strict=True):
        known = set(split.train[u].tolist()) | {int(split.val_target[u]), int(split.test_target[u])}
        assert set(row[row > 0].tolist()) == set(range(1, 21)) - known
    out = ev.evaluate(ConstantScorer(split.n_items))
    assert out["protocol"]["users_short_of_negatives"]["sampled_uniform"] == len(split.users("test"))
    # PAD padding never outranks or ties the target: rank = number of real negatives
    n_real = (negs > 0).sum(axis=1)
    assert out["sampled_uniform"]["mrr"] == pytest.approx(np.mean(1.0 / (n_real + 1)))
    assert ev.evaluate(OracleScorer(split))["sampled_uniform"]["hr@1"] == 1.0


# --------------------------------------------------------------------------- long tail


def test_long_tail_buckets_follow_training_popularity():
    split = random_split(500, 50, seed=6, lengths=(4, 15))
    ev = Evaluator(split, cfg())
    bucket = ev.item_buckets()
    pop = split.item_popularity()
    assert bucket[0] == -1
    assert [(bucket == b).sum() for b in range(3)] == [10, 20, 20]
    assert pop[bucket == 0].min() >= pop[bucket == 1].max() >= pop[bucket == 2].min()

    class HeadOracle(OracleScorer):
        def score(self, users, histories):
            scores = super().score(users, histories)
            scores[torch.as_tensor(bucket[self.targets[users]] != 0)] = 0.0
            return scores

    out = ev.evaluate(HeadOracle(split), modes=("full",))
    lt = out["long_tail"]
    assert lt["head"]["hr@10"] == 1.0 and lt["head"]["ndcg@10"] == 1.0
    assert lt["mid"]["hr@10"] < 0.5 and lt["tail"]["hr@10"] < 0.5
    targets = split.test_target[split.users("test")]
    assert [lt[name]["n_users"] for name in ("head", "mid", "tail")] == [
        int((bucket[targets] == b).sum()) for b in range(3)
    ]
    assert lt["head"]["share_of_train_interactions"] > lt["tail"]["share_of_train_interactions"]
