"""Vector search over a fixed matrix of item vectors: exact, approximate (faiss HNSW), or in Qdrant.

Row j holds item index j (row 0 is PAD: it never comes back from a search). Two metrics:
    cosine  item-to-item similarity of the model's output item vectors (rows normalised once)
    ip      inner product: with the model's item vectors and output bias folded into one
            (D + 1)-vector per item and the intent vector [h, 1], `q . v_j` is exactly the model's
            score of item j (see `bert4rec.inference.intents`), so a search ranks like the model.

`ExactIndex` is one matrix-vector product: under a millisecond at MovieLens scale, ~20 ms at 1M
64-d items. `HnswIndex` is faiss's HNSW graph: a few hundred vector comparisons per query, whatever
the catalogue size (benchmarks/results/serving/vector_index.md). `build_index(kind="auto")` picks exact below
`threshold` items and HNSW above it. `build_index(kind="qdrant")` keeps the vectors in a Qdrant server
or cluster (or qdrant-client's local mode): `bert4rec.inference.qdrant_index`.

Both answer `search(query, k, exclude, mask)` with the same contract: at most `k` item indices, best
first, never PAD, never an index in `exclude`, and only items where `mask` is True. Metadata filters
therefore stay exact with the approximate index: a selective filter is searched exhaustively over the
items that pass it, a broad one through the graph with an id selector (`faiss.IDSelectorBitmap`), and a
graph search that comes back with fewer than the items available falls back to the exhaustive one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from bert4rec.errors import ConfigError

Metric = Literal["cosine", "ip"]
IndexKind = Literal["auto", "exact", "hnsw", "qdrant"]
INDEX_KINDS: tuple[str, ...] = ("auto", "exact", "hnsw", "qdrant")
# `auto` switches to HNSW above this many items: an exact 64-d search over 200k items takes ~3-5 ms on
# one core of the 2-core benchmark machine, HNSW well under 1 ms (benchmarks/results/serving/vector_index.md)
DEFAULT_THRESHOLD = 200_000
MAX_EF_SEARCH = 4096  # the widest candidate list a filtered graph search uses
# a filter too selective for that list (efSearch / passing share > MAX_EF_SEARCH) is scored exhaustively
# when at most this many items pass: at 5M items a 0.5% filter (25,000 items) lost half its recall in
# the graph (0.499 at p50 14 ms, benchmarks/results/serving/vector_index_5m.md), and scoring those
# rows directly is exact and faster
MAX_EXHAUSTIVE = 250_000
FAISS_HINT = "the approximate index needs faiss: pip install 'bert4rec[serve]' (faiss-cpu)"


@dataclass
class SearchResult:
    """Best first: `indices` (k',) item indices (>= 1) and their `scores` (k',), k' <= k."""

    scores: np.ndarray
    indices: np.ndarray


class VectorIndex(Protocol):
    """What the Recommender needs from an item index."""

    @property
    def kind(self) -> str: ...

    @property
    def metric(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def n_items(self) -> int: ...

    def vector(self, idx: int) -> np.ndarray: ...

    def search(
        self, query: np.ndarray | torch.Tensor, k: int, exclude: Any = None, mask: np.ndarray | None = None
    ) -> SearchResult: ...


def _as_query(query: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(query, torch.Tensor):
        query = query.detach().float().cpu().numpy()
    return np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(-1))


def _normalise_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)  # a zero row (PAD, no text) stays zero


def _allowed(n: int, exclude: Any, mask: np.ndarray | None) -> np.ndarray | None:
    """(n,) bool of searchable rows, or None when everything but PAD may come back."""
    ex = None if exclude is None else np.asarray(exclude, dtype=np.int64).reshape(-1)
    if mask is None and (ex is None or len(ex) == 0):
        return None
    out = np.ones(n, dtype=bool) if mask is None else np.array(mask, dtype=bool, copy=True)
    if out.shape != (n,):
        raise ValueError(f"mask has shape {out.shape}, expected ({n},)")
    out[0] = False
    if ex is not None and len(ex):
        out[ex] = False
    return out


def _matvec(matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(n, D) @ (D,) through torch, not numpy: the product then runs on torch's thread setting (one
    per request when serving) instead of a BLAS thread pool spinning against the other requests."""
    return (torch.from_numpy(matrix) @ torch.from_numpy(q)).numpy()


def _top(scores: np.ndarray, rows: np.ndarray | None, k: int) -> SearchResult:
    """Top k of `scores` (finite only); `rows` maps positions to item indices (None = identity)."""
    finite = np.isfinite(scores)
    k = min(k, int(finite.sum()))
    if k <= 0:
        return SearchResult(np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64))
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    # best first; equal scores by index, so exact search is deterministic
    order = part[np.lexsort((part, -scores[part]))]
    idx = order if rows is None else rows[order]
    return SearchResult(scores[order].astype(np.float32), idx.astype(np.int64))


class ExactIndex:
    """Exhaustive search: one matrix-vector product against every item vector."""

    kind = "exact"

    def __init__(self, vectors: torch.Tensor | np.ndarray, metric: Metric = "cosine") -> None:
        if metric not in ("cosine", "ip"):
            raise ConfigError(f"unknown metric {metric!r}: use 'cosine' or 'ip'")
        self.metric = metric
        v = torch.as_tensor(vectors).detach().float().cpu()
        # normalise once for cosine; a zero row (PAD, items without text) stays zero and scores 0
        self.vectors = F.normalize(v, dim=1) if metric == "cosine" else v.contiguous()  # (n_items + 1, D)
        self._np = self.vectors.numpy()

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def n_items(self) -> int:
        return int(self.vectors.shape[0]) - 1

    def vector(self, idx: int) -> np.ndarray:
        """The stored (normalised, for cosine) vector of item index `idx`."""
        return self._np[idx]

    def scores(self, query: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(D,) query -> (n_items + 1,) similarities (cosine: the query is normalised too)."""
        q = torch.as_tensor(_as_query(query))
        if self.metric == "cosine":
            q = F.normalize(q, dim=0)
        return self.vectors @ q

    def similar(self, idx: int) -> torch.Tensor:
        """(n_items + 1,) similarities to item index `idx` (itself included, scoring 1 for cosine)."""
        return self.vectors @ self.vectors[idx]

    def search(
        self, query: np.ndarray | torch.Tensor, k: int, exclude: Any = None, mask: np.ndarray | None = None
    ) -> SearchResult:
        """Top `k` item indices by similarity to `query`; never PAD, `exclude`, or items outside `mask`."""
        allowed = _allowed(self.n_items + 1, exclude, mask)
        q = _as_query(query)
        if self.metric == "cosine":
            norm = float(np.linalg.norm(q))
            q = q / norm if norm > 0 else q
        if allowed is not None and allowed.sum() * 4 < len(allowed):
            # a selective filter: score only the items that pass it
            rows = np.flatnonzero(allowed)
            return _top(_matvec(self._np[rows], q), rows, k)
        scores = _matvec(self._np, q)
        scores[0] = -np.inf
        if allowed is not None:
            scores[~allowed] = -np.inf
        return _top(scores, None, k)


def default_ef_search(n_items: int) -> int:
    """efSearch for a catalogue of `n_items` with the default graph (M 16, efConstruction 80): 256 up to
    1.25M items, then 256 more per 1.25M. Measured recall@10 (benchmarks/results/serving/): 1M items
    0.975 at 256; 5M items 0.878 at 256, 0.937 at 512, 0.966 at 1,024 (p50 2 ms on a loaded machine)."""
    return min(256 * max(1, -(-n_items // 1_250_000)), MAX_EF_SEARCH)


class HnswIndex:
    """Approximate search with faiss's HNSW graph (`IndexHNSWFlat`, inner product on the stored rows).

    `m` links per node and `ef_construction` trade build time and memory for recall; `ef_search` (the
    candidate list per query, raised to at least the number of results wanted; default
    `default_ef_search(n_items)`, wider for larger catalogues) trades speed for recall.
    The defaults are the setting measured at 1M items (benchmarks/results/serving/vector_index.md): recall@10
    0.975 at p50 0.3 ms, 0.951 with a filter passing 25% of the items.
    `ip` searches the graph with inner products directly. (The textbook reduction to a distance, one
    more coordinate sqrt(M^2 - |v|^2) per item, measured far worse here: recall@10 0.64 against 0.997
    at efSearch 64 on 20k generated item vectors, because the extra coordinate dominates.)
    Filters and exclusions are exact: see the module docstring. `exact_below` is the number of
    passing items under which a filtered query is scored exhaustively (it costs about as much as a
    graph search then, and a graph search with a very selective filter loses recall); so is a
    filter that passes too small a share for the widest candidate list (`MAX_EF_SEARCH`), up to
    `MAX_EXHAUSTIVE` passing items.
    """

    kind = "hnsw"

    def __init__(
        self,
        vectors: torch.Tensor | np.ndarray,
        metric: Metric = "cosine",
        m: int = 16,
        ef_construction: int = 80,
        ef_search: int | None = None,
        exact_below: int = 20_000,
    ) -> None:
        try:
            import faiss
        except ImportError:
            raise ConfigError(FAISS_HINT) from None
        if metric not in ("cosine", "ip"):
            raise ConfigError(f"unknown metric {metric!r}: use 'cosine' or 'ip'")
        self._faiss = faiss
        self.metric = metric
        self.exact_below = exact_below
        v = np.ascontiguousarray(torch.as_tensor(vectors).detach().float().cpu().numpy(), dtype=np.float32)
        n, d = v.shape
        self._n, self._d = n, d
        self.ef_search = default_ef_search(n - 1) if ef_search is None else ef_search
        if metric == "cosine":
            v = _normalise_rows(v)
        # faiss ids are item index - 1: PAD (row 0) is not in the graph at all
        self.index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction
        self.index.add(np.ascontiguousarray(v[1:]))
        # the exhaustive fallback reads the graph's own copy of the vectors (no second copy in memory)
        storage = faiss.downcast_index(self.index.storage)
        xb = faiss.rev_swig_ptr(storage.get_xb(), (n - 1) * d)  # type: ignore[attr-defined]
        self._rows = xb.reshape(n - 1, d)  # row i = item index i + 1

    @property
    def dim(self) -> int:
        return self._d

    @property
    def n_items(self) -> int:
        return self._n - 1

    def vector(self, idx: int) -> np.ndarray:
        """The stored (normalised, for cosine) vector of item index `idx` (PAD: zeros)."""
        return np.zeros(self._d, dtype=np.float32) if idx == 0 else self._rows[idx - 1]

    def _graph(self, q: np.ndarray, k: int, selector: Any = None, passing: float = 1.0) -> SearchResult:
        params = self._faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
        # with a filter only the passing share of the candidates can be answers: widen the list to
        # match (recall@10 with 25% passing, 100k items, efSearch 32: 0.88 -> 0.96)
        params.efSearch = min(int(max(self.ef_search, k) / max(passing, 1e-6)), MAX_EF_SEARCH)
        if selector is not None:
            params.sel = selector
        scores, ids = self.index.search(q[None], k, params=params)
        keep = ids[0] >= 0  # -1 pads the answer when the graph found fewer than k
        return SearchResult(scores[0][keep].astype(np.float32), ids[0][keep].astype(np.int64) + 1)

    def _exhaustive(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> SearchResult:
        if allowed is None:
            return _top(_matvec(self._rows, q), np.arange(1, self._n, dtype=np.int64), k)
        rows = np.flatnonzero(allowed[1:])
        return _top(_matvec(self._rows[rows], q), rows + 1, k)

    def search(
        self, query: np.ndarray | torch.Tensor, k: int, exclude: Any = None, mask: np.ndarray | None = None
    ) -> SearchResult:
        """Approximately the top `k` item indices by similarity to `query`; never PAD, `exclude`, or
        items outside `mask` (those rules are exact)."""
        q = _as_query(query)
        if self.metric == "cosine":
            norm = float(np.linalg.norm(q))
            q = q / norm if norm > 0 else q
        if mask is None:
            # no filter: over-fetch by the excluded items and drop them afterwards
            ex = np.unique(np.asarray([] if exclude is None else exclude, dtype=np.int64).reshape(-1))
            ex = ex[(ex >= 1) & (ex < self._n)]
            available = self.n_items - len(ex)
            want = min(k, available)
            found = self._graph(q, min(k + len(ex), self.n_items))
            if len(ex):
                keep = ~np.isin(found.indices, ex)
                found = SearchResult(found.scores[keep][:k], found.indices[keep][:k])
            if len(found.indices) >= want:
                return found
            return self._exhaustive(q, k, _allowed(self._n, ex, None))
        allowed = _allowed(self._n, exclude, mask)
        assert allowed is not None
        n_allowed = int(allowed.sum())
        passing = n_allowed / self.n_items
        too_selective = max(self.ef_search, k) / max(passing, 1e-9) > MAX_EF_SEARCH
        if n_allowed <= self.exact_below or (too_selective and n_allowed <= MAX_EXHAUSTIVE):
            return self._exhaustive(q, k, allowed)
        # faiss ids are index - 1; IDSelectorBitmap reads bit (id % 8) of byte (id // 8)
        bits = np.packbits(allowed[1:], bitorder="little")
        selector = self._faiss.IDSelectorBitmap(self.n_items, self._faiss.swig_ptr(bits))
        found = self._graph(q, k, selector, passing=passing)
        if len(found.indices) >= min(k, n_allowed):
            return found
        return self._exhaustive(q, k, allowed)


def build_index(
    vectors: torch.Tensor | np.ndarray,
    kind: str = "auto",
    threshold: int = DEFAULT_THRESHOLD,
    metric: Metric = "cosine",
    *,
    qdrant: Mapping[str, Any] | None = None,
    **options: Any,
) -> VectorIndex:
    """An index over `vectors` (n_items + 1, D), row 0 PAD: `exact`, `hnsw` (faiss), `auto` (HNSW
    when there are more than `threshold` items and faiss is installed, else exact) or `qdrant` (a
    `QdrantIndex`; `qdrant` holds its `QdrantOptions` fields, url or path first). Keyword `options`
    go to the index class: `HnswIndex` (m, ef_construction, ef_search, exact_below) or `QdrantIndex`
    (payload, active, version, lineage)."""
    if kind not in INDEX_KINDS:
        raise ConfigError(f"unknown index {kind!r}: use one of {', '.join(INDEX_KINDS)}")
    if kind == "qdrant":
        from bert4rec.inference.qdrant_index import QdrantIndex

        return QdrantIndex(vectors, metric, qdrant, **options)
    n_items = int(vectors.shape[0]) - 1
    if kind == "auto":
        if n_items <= threshold:
            kind = "exact"
        else:
            try:
                import faiss  # noqa: F401
            except ImportError:
                kind = "exact"
            else:
                kind = "hnsw"
    if kind == "exact":
        return ExactIndex(vectors, metric=metric)
    return HnswIndex(vectors, metric=metric, **options)
