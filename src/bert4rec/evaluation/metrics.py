"""Rank-based metrics for leave-one-out evaluation (one held-out target per user).

Every metric takes the 0-based rank of each user's target (rank 0 = recommended first) and returns
the mean over users as a python float. With a single relevant item, recall@k equals the hit rate
and precision@k is hit/k. An empty rank array gives NaN (there is nothing to average).

`rank_of_target` turns a score matrix into those ranks with a pessimistic tie policy, so a model
that cannot tell items apart (for example a constant scorer) gets the worst rank, never a lucky one.

Genre-level metrics (`genre_precision`, `genre_ndcg`) judge the top-k *list* instead of the target's
rank: a recommended item counts (fully or in part) when it shares genres with the held-out item.
They take the top-k item indices, the targets and a (n_items + 1, n_genres) multi-hot genre matrix
(row 0 = PAD, no genres; index 0 in a top-k list means "no item there"), and skip users whose target
has no genre. Definitions in `GENRE_PRECISION_DEFINITION` / `GENRE_NDCG_DEFINITION` and in
docs/genre-metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

TIE_POLICY = (
    "pessimistic: rank = #candidates scoring strictly higher than the target + #other candidates scoring "
    "equal; excluded candidates (score -inf) never tie with the target"
)
GENRE_PRECISION_DEFINITION = (
    "genre_precision@k = mean over users whose target has >= 1 genre of "
    "(#items among the top k sharing >= 1 genre with the target) / k"
)
GENRE_NDCG_DEFINITION = (
    "genre_ndcg@k = mean over users whose target has >= 1 genre of DCG / IDCG, with graded relevance "
    "rel(i) = Jaccard(genres(i), genres(target)) = |intersection| / |union|, "
    "DCG = sum over ranks r = 0..k-1 of rel(item at r) / log2(r + 2), and IDCG the same sum over the "
    "k highest rel values among all ranking candidates (the catalogue minus the evaluator's exclusions; "
    "the target itself, rel 1, is always a candidate)"
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


# ---------------------------------------------------------------------------------------------- genres


def _genre_inputs(
    items: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray, genres: torch.Tensor | np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(items (U, K) int64, targets (U,) int64, genres (n_items + 1, G) float32) on genres' device."""
    g = torch.as_tensor(genres)
    if g.ndim != 2:
        raise ValueError(
            f"genres must be a (n_items + 1, n_genres) multi-hot matrix, got shape {tuple(g.shape)}"
        )
    g = g.to(torch.float32)
    top = torch.as_tensor(items).to(device=g.device, dtype=torch.int64)
    tgt = torch.as_tensor(targets).to(device=g.device, dtype=torch.int64).reshape(-1)
    if top.ndim != 2 or top.shape[0] != tgt.shape[0]:
        raise ValueError(
            f"top items must be (n_users, k) with one row per target; got {tuple(top.shape)} "
            f"for {tgt.shape[0]} targets"
        )
    for name, idx in (("top items", top), ("targets", tgt)):
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= g.shape[0]):
            raise ValueError(f"{name} must be item indices in [0, {g.shape[0] - 1}] (0 = no item / PAD)")
    return top, tgt, g


def _jaccard(inter: torch.Tensor, size_a: torch.Tensor, size_b: torch.Tensor) -> torch.Tensor:
    """|A & B| / |A | B| from the intersection sizes and both set sizes (0 when both sets are empty)."""
    union = size_a + size_b - inter
    return torch.where(union > 0, inter / union.clamp(min=1.0), torch.zeros_like(inter))


def _discounts(k: int, device: torch.device) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(k, device=device, dtype=torch.float64) + 2.0)  # (k,)


def genre_metrics_per_user(
    top_items: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    genres: torch.Tensor | np.ndarray,
    ks: Iterable[int],
    excluded: torch.Tensor | np.ndarray | None = None,
) -> dict[str, torch.Tensor]:
    """Per-user genre precision@k and genre NDCG@k for every k of `ks`, from one pass over the lists.

    `top_items` (U, >= max(ks)) item indices, best first (index 0 = no item: shares nothing, rel 0);
    `targets` (U,); `genres` (n_items + 1, G) multi-hot (row 0 = PAD, empty); `excluded` optional
    (U, n_items + 1) bool, True = not a candidate of user u's ranking (default: every item 1..n_items
    is one).

    * genre_precision@k = (#items among the first k of the list that share at least one genre with
      the target) / k. Always divided by k: missing slots are not rewarded.
    * genre_ndcg@k = DCG / IDCG with rel(i) = Jaccard(genres(i), genres(target)) = |i & t| / |i | t|,
      DCG = sum_{r=0}^{k-1} rel(list[r]) / log2(r + 2), IDCG = the same sum over the k largest rel
      values among the candidates (the best list that ranking could produce). The target (rel 1)
      should stay a candidate, so that IDCG >= 1 and 0 <= genre_ndcg <= 1.

    Returns {"genre_precision@k": (U,), "genre_ndcg@k": (U,)} float64 on genres' device, NaN for users
    whose target has no genre (the metrics are undefined for them).
    """
    ks = sorted(set(ks))
    if not ks:
        raise ValueError("ks must name at least one cutoff")
    for k in ks:
        _check_k(k)
    top, tgt, g = _genre_inputs(top_items, targets, genres)
    k_max = ks[-1]
    if top.shape[1] < k_max:
        raise ValueError(f"need the top {k_max} items per user, got {top.shape[1]}")
    top = top[:, :k_max]
    sizes = g.sum(dim=1)  # (n_items + 1,) genres per item
    g_t = g[tgt]  # (U, G)
    size_t = sizes[tgt]  # (U,)
    inter = torch.einsum("ukg,ug->uk", g[top], g_t)  # (U, k_max) genres shared with the target
    rel = _jaccard(inter, sizes[top], size_t[:, None]).to(torch.float64)
    disc = _discounts(k_max, g.device)
    shared_cum = (inter > 0).to(torch.float64).cumsum(dim=1)  # (U, k_max)
    dcg_cum = (rel * disc).cumsum(dim=1)
    # relevance of every catalogue item for each target: (U, G) @ (G, n_items + 1)
    rel_all = _jaccard(g_t @ g.T, sizes[None, :], size_t[:, None])
    rel_all[:, 0] = 0.0  # PAD is never a candidate
    if excluded is not None:
        mask = torch.as_tensor(excluded).to(device=g.device, dtype=torch.bool)
        if tuple(mask.shape) != tuple(rel_all.shape):
            raise ValueError(f"excluded must have shape {tuple(rel_all.shape)}, got {tuple(mask.shape)}")
        rel_all = rel_all.masked_fill(mask, 0.0)
    n_ideal = min(k_max, rel_all.shape[1])
    ideal = rel_all.topk(n_ideal, dim=1).values.to(torch.float64)  # (U, n_ideal), best first
    if n_ideal < k_max:  # a catalogue smaller than k: the ideal list has no more items
        ideal = torch.nn.functional.pad(ideal, (0, k_max - n_ideal))
    idcg_cum = (ideal * disc).cumsum(dim=1)
    undefined = size_t == 0
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=g.device)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        out[f"genre_precision@{k}"] = torch.where(undefined, nan, shared_cum[:, k - 1] / k)
        idcg = idcg_cum[:, k - 1]
        ndcg_k = dcg_cum[:, k - 1] / idcg.clamp(min=1e-12)
        out[f"genre_ndcg@{k}"] = torch.where(undefined | (idcg <= 0), nan, ndcg_k)
    return out


def genre_precision_per_user(
    top_items: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    genres: torch.Tensor | np.ndarray,
    k: int,
) -> torch.Tensor:
    """Per-user genre precision@k: (#items among the first k of `top_items[u]` that share at least one
    genre with `targets[u]`) / k; NaN where the target has no genre. See `genre_metrics_per_user`."""
    return genre_metrics_per_user(top_items, targets, genres, [k])[f"genre_precision@{k}"]


def genre_ndcg_per_user(
    top_items: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    genres: torch.Tensor | np.ndarray,
    k: int,
    excluded: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Per-user genre NDCG@k, relevance = Jaccard of genre sets, IDCG over the best list of the
    candidates (all items minus `excluded`); NaN where the target has no genre. See
    `genre_metrics_per_user`."""
    return genre_metrics_per_user(top_items, targets, genres, [k], excluded)[f"genre_ndcg@{k}"]


def _nanmean(values: torch.Tensor) -> float:
    v = values[~torch.isnan(values)]
    return float(v.mean()) if v.numel() else float("nan")


def genre_precision(
    top_items: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    genres: torch.Tensor | np.ndarray,
    k: int,
) -> float:
    """Genre precision@k: the mean of `genre_precision_per_user` over users whose target has a genre
    (NaN when none has). See GENRE_PRECISION_DEFINITION."""
    return _nanmean(genre_precision_per_user(top_items, targets, genres, k))


def genre_ndcg(
    top_items: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    genres: torch.Tensor | np.ndarray,
    k: int,
    excluded: torch.Tensor | np.ndarray | None = None,
) -> float:
    """Genre NDCG@k: the mean of `genre_ndcg_per_user` over users whose target has a genre (NaN when
    none has). See GENRE_NDCG_DEFINITION."""
    return _nanmean(genre_ndcg_per_user(top_items, targets, genres, k, excluded))
