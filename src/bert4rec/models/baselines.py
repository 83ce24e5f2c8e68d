"""Non-sequential baselines that show when BERT4Rec is worth its cost: popularity, item-KNN, MF (ALS).

All three are a `Scorer` (`bert4rec.models.base`) with a `fit`:

* `fit(split)` learns from `split.train` only, never from the validation or test targets;
* `score(users, histories)` scores from the *given* histories (at test time the validation item is
  part of the history), ignores `users`, and returns a float32 tensor (B, n_items + 1) whose column j
  scores item index j and whose column 0 (PAD) is -inf.

Histories are read as sets of items (a repeated item counts once, at its most recent position),
which matches the binary user x item matrix the models are trained on. All three are deterministic:
popularity and item-KNN have no randomness, MF takes a `seed`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict

from bert4rec.config import BASELINE_TYPES, BaselinesConfig, ItemKNNConfig, MFConfig
from bert4rec.errors import NotFittedError

if TYPE_CHECKING:
    from bert4rec.data.sequences import SequenceSplit

# Item-KNN computes similarities for blocks of item rows holding at most about this many
# co-occurrence entries (a few hundred MiB with temporaries), so memory stays bounded for
# large catalogues; the kept neighbour matrix has at most k_neighbors entries per item.
_BLOCK_NNZ = 1 << 22


class _BaselineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _flatten(histories: Sequence[np.ndarray], n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(B,) history lengths and all their item indices concatenated, checked to lie in 0..n_cols - 1."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    if lengths.sum() == 0:
        return lengths, np.zeros(0, dtype=np.int64)
    cols = np.concatenate([np.asarray(h, dtype=np.int64).ravel() for h in histories])
    if cols.min() < 0 or cols.max() >= n_cols:
        bad = cols[(cols < 0) | (cols >= n_cols)][0]
        raise ValueError(
            f"history contains item index {int(bad)}, outside 0..{n_cols - 1}: encode items with the "
            "model's vocabulary (indices 1..n_items) before scoring"
        )
    return lengths, cols


def history_matrix(histories: Sequence[np.ndarray], n_cols: int, decay: float | None = None) -> sp.csr_matrix:
    """(B, n_cols) sparse float32 matrix of the histories, oldest item first in each history.

    Each distinct item gets weight 1, or `decay ** age` when `decay` is given, where age is 0 for the
    most recent position of that item in the history. PAD (0) entries are ignored.
    """
    b = len(histories)
    lengths, cols = _flatten(histories, n_cols)
    if len(cols) == 0:
        return sp.csr_matrix((b, n_cols), dtype=np.float32)
    rows = np.repeat(np.arange(b), lengths)
    ends = np.cumsum(lengths) - 1  # position of each history's most recent item
    age = np.repeat(ends, lengths) - np.arange(len(cols))
    keep = cols > 0
    rows, cols, age = rows[keep], cols[keep], age[keep]
    # sort by (row, col, age) so the first entry of each (row, col) run is its most recent occurrence
    order = np.lexsort((age, cols, rows))
    rows, cols, age = rows[order], cols[order], age[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    rows, cols, age = rows[first], cols[first], age[first]
    weights = np.ones(len(rows)) if decay is None else np.power(float(decay), age)
    return sp.csr_matrix((weights.astype(np.float32), (rows, cols)), shape=(b, n_cols))


def _with_pad_excluded(scores: np.ndarray) -> torch.Tensor:
    out = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))
    out[:, 0] = -math.inf
    return out


# --------------------------------------------------------------------------------------- popularity


class PopularityConfig(_BaselineConfig):
    """Popularity has no hyperparameters; the config exists so every baseline looks the same."""


class PopularityRecommender:
    """Scores every item by its number of training interactions, identically for every user."""

    name = "popularity"

    def __init__(self) -> None:
        self.config = PopularityConfig()
        self._popularity: np.ndarray | None = None  # (n_items + 1,) float32

    def get_config(self) -> dict[str, Any]:
        return self.config.model_dump()

    def fit(self, split: SequenceSplit) -> PopularityRecommender:
        """Count each item's interactions in `split.train`."""
        self._popularity = split.item_popularity().astype(np.float32)
        return self

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, n_items + 1) training counts, the same row for every user; column 0 is -inf."""
        if self._popularity is None:
            raise NotFittedError(type(self).__name__)
        _flatten(histories, len(self._popularity))  # same input checks as the other baselines
        return _with_pad_excluded(np.tile(self._popularity, (len(histories), 1)))


# ----------------------------------------------------------------------------------------- item-KNN


class ItemKNNRecommender:
    """Item-based nearest neighbours on the binary user x item matrix of the training sequences.

    sim(i, j) = |U_i & U_j| / (sqrt(|U_i|) * sqrt(|U_j|) + shrink), U_i = training users of item i;
    each item keeps its `k_neighbors` most similar other items. A user's score for item j is the sum
    of sim(h, j) over the history items h that have j among their neighbours, optionally weighted
    by recency (`recency_decay`), which makes this baseline a little sequence-aware.
    """

    name = "item_knn"

    def __init__(
        self, k_neighbors: int = 100, shrink: float = 10.0, recency_decay: float | None = None
    ) -> None:
        self.config = ItemKNNConfig(k_neighbors=k_neighbors, shrink=shrink, recency_decay=recency_decay)
        self._similarity: sp.csr_matrix | None = None  # (n_items + 1, n_items + 1), row i = neighbours of i

    def get_config(self) -> dict[str, Any]:
        return self.config.model_dump()

    def fit(self, split: SequenceSplit) -> ItemKNNRecommender:
        """Build the top-k cosine neighbour matrix from `split.train`."""
        n_cols = split.n_items + 1
        x = history_matrix(split.train, n_cols)  # (U, I + 1) binary
        xt = x.T.tocsr()  # (I + 1, U)
        support = np.diff(xt.indptr)  # (I + 1,) training users per item
        norms = np.sqrt(support.astype(np.float32))
        # upper bound on the non-zeros of each similarity row: sum of its users' history lengths
        row_nnz = np.minimum(xt @ np.diff(x.indptr).astype(np.int64), n_cols)
        block_id = np.cumsum(row_nnz[1:]) // _BLOCK_NNZ
        starts = 1 + np.flatnonzero(np.diff(block_id, prepend=-1))
        k = self.config.k_neighbors
        rows, cols, vals = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
        for start, stop in zip(starts, [*starts[1:], n_cols], strict=True):
            co = xt[start:stop] @ x  # (b, I + 1) co-occurrence counts, CSR
            co.sort_indices()  # columns ascending within each row: the stable sort below keeps that for ties
            r = np.repeat(np.arange(start, stop, dtype=np.int64), np.diff(co.indptr))
            c = co.indices.astype(np.int64)
            sim = (co.data / (norms[r] * norms[c] + np.float32(self.config.shrink))).astype(np.float32)
            keep = (r != c) & (sim > 0)  # an item is not its own neighbour; norms >= 1 where co > 0
            r, c, sim = r[keep], c[keep], sim[keep]
            # per row: best similarity first (ties: lower item index), keep the first k. One int64 key
            # (row, then the bits of the positive float32 similarity, which order like its value,
            # inverted) sorts ~5x faster than np.lexsort.
            key = ((r - start) << 32) | (0xFFFFFFFF - sim.view(np.uint32).astype(np.int64))
            order = np.argsort(key, kind="stable")
            r, c, sim = r[order], c[order], sim[order]
            first = np.searchsorted(r, r, side="left")
            top = np.arange(len(r)) - first < k
            rows.append(r[top])
            cols.append(c[top])
            vals.append(sim[top])
        self._similarity = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_cols, n_cols)
        )
        return self

    @property
    def similarity(self) -> sp.csr_matrix:
        """(n_items + 1, n_items + 1) sparse neighbour matrix: row i holds the kept neighbours of item i."""
        if self._similarity is None:
            raise NotFittedError(type(self).__name__)
        return self._similarity

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, n_items + 1) summed (recency-weighted) similarities of the history items; column 0 is -inf."""
        sim = self.similarity
        h = history_matrix(histories, sim.shape[0], self.config.recency_decay)  # (B, I + 1)
        return _with_pad_excluded((h @ sim).toarray())

    def similar_items(self, item_idx: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The (at most min(k, k_neighbors)) most similar items to `item_idx`, best first.

        Returns (item indices int64, similarities float32); ties are ordered by item index.
        """
        sim = self.similarity
        if not 1 <= item_idx < sim.shape[0]:
            raise ValueError(
                f"item_idx {item_idx} is outside 1..{sim.shape[0] - 1} (the model's item indices)"
            )
        row = sim.getrow(item_idx)
        items, scores = row.indices.astype(np.int64), row.data.astype(np.float32)
        order = np.lexsort((items, -scores))[:k]
        return items[order], scores[order]


# --------------------------------------------------------------------------------------- MF (ALS)


def _import_implicit() -> tuple[Any, Any]:
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits
    except ImportError as err:
        raise ImportError(
            "MFRecommender needs the `implicit` package (ALS) and `threadpoolctl`: "
            "pip install 'implicit>=0.7' threadpoolctl"
        ) from err
    return AlternatingLeastSquares, threadpool_limits


class MFRecommender:
    """Implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008) with `implicit`'s CPU ALS.

    Trained on the binary user x item matrix of `split.train` (confidence `alpha` for observed
    items, 1 for the rest). Histories at evaluation time differ from the training rows (the test
    input adds the validation item), so `score` never looks up a trained user vector: it *folds in*
    each given history with `implicit`'s `recalculate_user`, the exact ALS closed form
    x_u = (Y^T C_u Y + reg * I)^-1 Y^T C_u p_u over the trained item factors Y (Cholesky, not CG).
    BLAS is pinned to one thread while `implicit` runs its own OpenMP threads (no oversubscription,
    and the results do not depend on BLAS threading).
    """

    name = "mf"

    def __init__(
        self,
        factors: int = 64,
        iterations: int = 15,
        regularization: float = 0.01,
        alpha: float = 1.0,
        seed: int = 42,
        num_threads: int = 0,
    ) -> None:
        self.config = MFConfig(
            factors=factors,
            iterations=iterations,
            regularization=regularization,
            alpha=alpha,
            seed=seed,
            num_threads=num_threads,
        )
        self._als: Any = None

    def get_config(self) -> dict[str, Any]:
        return self.config.model_dump()

    def fit(self, split: SequenceSplit) -> MFRecommender:
        """Run ALS on the binary user x item matrix of `split.train` (item columns = item indices)."""
        als_cls, threadpool_limits = _import_implicit()
        cfg = self.config
        x = history_matrix(split.train, split.n_items + 1)  # (U, I + 1); column 0 (PAD) stays empty
        with threadpool_limits(limits=1, user_api="blas"):
            als = als_cls(
                factors=cfg.factors,
                regularization=cfg.regularization,
                alpha=cfg.alpha,
                iterations=cfg.iterations,
                num_threads=cfg.num_threads,
                random_state=cfg.seed,
            )
            als.fit(x, show_progress=False)
        self._als = als
        return self

    @property
    def item_factors(self) -> torch.Tensor:
        """(n_items + 1, factors) float32 item factors; row 0 (PAD) is unused."""
        if self._als is None:
            raise NotFittedError(type(self).__name__)
        return torch.from_numpy(np.asarray(self._als.item_factors, dtype=np.float32))

    def user_factors(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, factors) user vectors folded in from the histories (zeros for an empty history)."""
        item_factors = self.item_factors
        h = history_matrix(histories, item_factors.shape[0])
        if h.shape[0] == 0:
            return torch.zeros(0, self.config.factors)
        _, threadpool_limits = _import_implicit()
        with threadpool_limits(limits=1, user_api="blas"):
            users = self._als.recalculate_user(np.arange(h.shape[0]), h)
        return torch.from_numpy(np.asarray(users, dtype=np.float32).reshape(h.shape[0], -1))

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, n_items + 1) dot products of the folded-in user vectors and item factors; column 0 is -inf."""
        scores = self.user_factors(histories) @ self.item_factors.T  # (B, I + 1)
        scores[:, 0] = -math.inf
        return scores


# --------------------------------------------------------------------------------------- registry

Baseline = PopularityRecommender | ItemKNNRecommender | MFRecommender
# every name of bert4rec.config.BASELINE_TYPES -> its class
BASELINES: dict[str, type[Baseline]] = {
    cls.name: cls for cls in (PopularityRecommender, ItemKNNRecommender, MFRecommender)
}
assert tuple(BASELINES) == BASELINE_TYPES


def build_baseline(model_type: str, settings: BaselinesConfig | None = None) -> Baseline:
    """An unfitted baseline by name, with its `baselines.<name>` settings (popularity has none)."""
    if model_type not in BASELINES:
        raise ValueError(f"not a baseline model type: {model_type!r} (expected one of {sorted(BASELINES)})")
    own = getattr(settings or BaselinesConfig(), model_type, None)
    return BASELINES[model_type](**own.model_dump()) if own is not None else BASELINES[model_type]()
