import math

import numpy as np
import pytest
import torch

from bert4rec.evaluation.metrics import (
    hit_rate,
    metric_table,
    mrr,
    ndcg,
    precision,
    rank_of_target,
    recall,
)

RANKS = np.array([0, 1, 4, 20])


def test_metrics_match_hand_computed_values():
    assert hit_rate(RANKS, 5) == pytest.approx(0.75)
    assert recall(RANKS, 5) == pytest.approx(0.75)
    assert precision(RANKS, 5) == pytest.approx(0.75 / 5)
    assert ndcg(RANKS, 5) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 4)
    assert mrr(RANKS) == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 21) / 4)
    assert hit_rate(RANKS, 1) == pytest.approx(0.25)
    assert ndcg(RANKS, 1) == pytest.approx(0.25)
    assert hit_rate(RANKS, 21) == pytest.approx(1.0)
    assert ndcg(RANKS, 21) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(22)) / 4)


def test_metrics_return_python_floats_for_numpy_lists_and_tensors():
    for ranks in (RANKS, RANKS.tolist(), torch.as_tensor(RANKS)):
        values = [hit_rate(ranks, 5), ndcg(ranks, 5), mrr(ranks), precision(ranks, 5), recall(ranks, 5)]
        assert all(type(v) is float for v in values)
        assert hit_rate(ranks, 5) == pytest.approx(0.75)


def test_metric_table_has_exactly_the_documented_keys():
    table = metric_table(RANKS, [10, 5, 10])
    assert list(table) == [
        "hr@5",
        "recall@5",
        "ndcg@5",
        "precision@5",
        "hr@10",
        "recall@10",
        "ndcg@10",
        "precision@10",
        "mrr",
    ]
    assert table["hr@5"] == hit_rate(RANKS, 5) and table["mrr"] == mrr(RANKS)
    assert all(type(v) is float for v in table.values())


def test_invalid_inputs_are_rejected_and_empty_gives_nan():
    with pytest.raises(ValueError, match="k must be a positive integer"):
        hit_rate(RANKS, 0)
    with pytest.raises(ValueError, match=">= 0"):
        mrr(np.array([-1, 2]))
    assert math.isnan(hit_rate(np.array([], dtype=np.int64), 10))
    assert math.isnan(mrr([]))


def _rank(row: list[float], target: int) -> int:
    return int(rank_of_target(torch.tensor([row]), torch.tensor([target]))[0])


def test_rank_counts_strictly_higher_candidates():
    assert _rank([0.1, 0.5, 0.3, 0.9], 3) == 0
    assert _rank([0.1, 0.5, 0.3, 0.9], 2) == 2
    assert _rank([0.1, 0.5, 0.3, 0.9], 0) == 3


def test_ties_are_pessimistic_so_a_constant_scorer_gets_the_worst_rank():
    assert _rank([1.0, 1.0, 1.0, 1.0], 0) == 3
    assert _rank([1.0, 1.0, 1.0, 1.0], 3) == 3
    assert _rank([0.5, 0.5, 0.9, 0.1], 0) == 2  # one higher + one tie


def test_excluded_candidates_never_tie_with_the_target():
    inf = float("inf")
    assert _rank([-inf, 0.3, -inf, -inf], 1) == 0
    # a -inf target ranks behind the finite candidates only, not behind the other excluded ones
    assert _rank([-inf, -inf, 2.0, -inf], 0) == 1
    assert _rank([-inf, -inf, -inf], 2) == 0


def test_nan_target_gets_the_worst_rank():
    assert _rank([float("nan"), 0.1, 0.2], 0) == 2


def test_rank_of_target_is_batched():
    scores = torch.tensor([[0.0, 3.0, 2.0, 1.0], [0.0, 1.0, 1.0, 5.0]])
    ranks = rank_of_target(scores, torch.tensor([3, 1]))
    assert ranks.dtype == torch.int64 and ranks.tolist() == [2, 2]
    with pytest.raises(ValueError, match="batch, candidates"):
        rank_of_target(torch.zeros(3), torch.tensor([0]))
