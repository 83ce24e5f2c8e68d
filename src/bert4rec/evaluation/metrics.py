"""Rank-based metrics for leave-one-out evaluation (one held-out target per user).

Every metric takes the 0-based rank of each user's target (rank 0 = recommended first) and returns
the mean over users as a python float. With a single relevant item, recall@k equals the hit rate
and precision@k is hit/k. An empty rank array gives NaN (there is nothing to average).

`rank_of_target` turns a score matrix into those ranks with a pessimistic tie policy, so a model
that cannot tell items apart (for example a constant scorer) gets the worst rank, never a lucky one.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

TIE_POLICY = (
    "pessimistic: rank = #candidates scoring strictly higher than the target + #other candidates scoring "
    "equal; excluded candidates (score -inf) never tie with the target"
)


def _ranks(ranks: np.ndarray | torch.Tensor | Iterable[int]) -> np.ndarray:
    if isinstance(ranks, torch.Tensor):
        ranks = ranks.detach().cpu().numpy()
    arr = np.asarray(ranks, dtype=np.float64).reshape(-1)
    if arr.size and (arr.min() < 0 or not np.isfinite(arr).all()):
        raise ValueError("ranks must be finite and >= 0 (0 = the target was recommended first)")
    return arr


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """Share of users whose target is in the top k (HR@k)."""
    _check_k(k)
    return _mean(_ranks(ranks) < k)


def recall(ranks: np.ndarray, k: int) -> float:
    """Recall@k; with one relevant item per user it equals the hit rate."""
    return hit_rate(ranks, k)


def precision(ranks: np.ndarray, k: int) -> float:
    """Precision@k = (relevant items in the top k) / k = HR@k / k with one target per user."""
    return hit_rate(ranks, k) / k


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item: 1 / log2(rank + 2) if rank < k else 0 (the ideal DCG is 1)."""
    _check_k(k)
    r = _ranks(ranks)
    return _mean(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0))


def mrr(ranks: np.ndarray) -> float:
    """Mean reciprocal rank, 1 / (rank + 1), without a cutoff."""
    return _mean(1.0 / (_ranks(ranks) + 1.0))


def metric_table(ranks: np.ndarray, ks: Iterable[int]) -> dict[str, float]:
    """All metrics for each k: keys like "hr@10", "recall@10", "ndcg@10", "precision@10", plus "mrr"."""
    r = _ranks(ranks)
    out: dict[str, float] = {}
    for k in sorted(set(ks)):
        out[f"hr@{k}"] = hit_rate(r, k)
        out[f"recall@{k}"] = recall(r, k)
        out[f"ndcg@{k}"] = ndcg(r, k)
        out[f"precision@{k}"] = precision(r, k)
    out["mrr"] = mrr(r)
    return out


def rank_of_target(scores: torch.Tensor, target_col: torch.Tensor) -> torch.Tensor:
    """0-based rank of column `target_col[b]` in row b of `scores` (B, C), higher score = better.

    Tie policy (pessimistic): rank = #candidates scoring strictly higher + #other candidates scoring
    exactly the same, so ties never flatter a model and a constant scorer ranks its target last.
    Excluded candidates carry -inf; if the target itself scores -inf it ranks behind every finite
    candidate but is not tied with the excluded ones. A NaN target score gets the worst rank, C - 1.
    Returns int64 ranks (B,) on the device of `scores`.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be (batch, candidates), got shape {tuple(scores.shape)}")
    target_col = target_col.to(device=scores.device, dtype=torch.int64).reshape(-1, 1)  # (B, 1)
    target = scores.gather(1, target_col)  # (B, 1)
    higher = (scores > target).sum(dim=1)
    # minus one: the target ties with itself
    equal = (scores == target).sum(dim=1) - 1
    equal = torch.where(torch.isneginf(target.squeeze(1)), torch.zeros_like(equal), equal)
    ranks = higher + equal
    worst = torch.full_like(ranks, scores.shape[1] - 1)
    return torch.where(torch.isnan(target.squeeze(1)), worst, ranks)
