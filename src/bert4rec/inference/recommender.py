"""The Recommender facade: external ids in, ranked items with titles out.

Four query types, each with `k`, metadata `filters` and `filter_seen`:
    item_to_item   items similar to one item (cosine of the model's output item vectors); an unknown
                   item with a free-text description falls back to MiniLM text similarity
    user_to_item   next items for a known user's stored history ([MASK] appended for BERT4Rec);
                   unknown users get global popularity
    contextual     a known user's history with the item they are looking at now appended
    sequential     an ad-hoc session of item ids (guests), oldest first (`session_items`)

The CLI and the HTTP API only talk to this class; it never imports training code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from bert4rec.artifacts import Bundle, load_bundle
from bert4rec.errors import ConfigError, ContentUnavailableError, QueryError, UnknownIdError
from bert4rec.inference.content import CONTENT_FILE, ContentIndex, TextEncoder, item_texts
from bert4rec.inference.filters import FilterValue, MetadataFilter
from bert4rec.inference.index import ExactIndex
from bert4rec.inference.onnx_backend import OnnxScorer
from bert4rec.inference.scoring import TransformerScorer

# how a list was produced: the sequence model on a history, global popularity (unknown user / empty
# history), nearest neighbours among the model's item vectors, or MiniLM text similarity
ResultPath = Literal["model", "popularity", "item_vectors", "content"]
Filters = Mapping[str, FilterValue]


@dataclass
class Recommendation:
    rank: int
    item_id: Any
    score: float
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecommendationList:
    items: list[Recommendation]
    path: str  # see ResultPath
    history_length: int  # items in the query's history (session, stored history + current item, ...)
    truncated: bool = False  # the history was longer than max_history and only its most recent part was used
    used_length: int = 0  # history items the model actually saw


class Recommender:
    """Ranks items for known users, ad-hoc sessions, similar items and (optionally) free text."""

    def __init__(self, bundle: Bundle, backend: str = "torch", threads: int = 1) -> None:
        """`backend="onnx"` scores with an in-memory ONNX Runtime export (`threads` intra-op threads;
        needs the onnx extra); the default "torch" runs the model eagerly."""
        self.bundle = bundle
        self.vocab = bundle.vocab
        self.backend = backend
        self.scorer: TransformerScorer | OnnxScorer
        if backend == "torch":
            self.scorer = TransformerScorer(bundle.model, name=bundle.config.model_type)
        elif backend == "onnx":
            self.scorer = OnnxScorer(bundle.model, name=bundle.config.model_type, threads=threads)
        else:
            raise ConfigError(f"unknown backend {backend!r}: use 'torch' or 'onnx'")
        self.max_len = bundle.config.model.max_len
        self._meta: dict[int, dict[str, Any]] = {}
        if bundle.items is not None:
            for row in bundle.items.to_dicts():
                item_id = row.pop("item_id")
                if self.vocab.has_item(item_id):
                    self._meta[self.vocab.item_idx(item_id)] = row
        self.filter = MetadataFilter(bundle.items, self.vocab)
        # built eagerly: a lazy cache would race between the API's worker threads
        self.item_index = ExactIndex(bundle.model.item_weights())
        # for search_items: lower-case titles and ids, position i = item index i + 1
        col = bundle.display_col
        titles = [
            str(self._meta.get(i, {}).get(col) or "") if col else "" for i in range(1, self.vocab.n_items + 1)
        ]
        self._search_titles = np.array([t.lower() for t in titles], dtype=str)
        self._search_ids = np.array([str(i).lower() for i in self.vocab.item_ids], dtype=str)
        self.content: ContentIndex | None = None

    @classmethod
    def load(cls, path: Path | str, backend: str = "torch", threads: int = 1) -> Recommender:
        """Load a model bundle folder (validated; raises ArtifactError with the reason)."""
        return cls(load_bundle(Path(path)), backend=backend, threads=threads)

    # ------------------------------------------------------------------ model facts
    @property
    def model_type(self) -> str:
        return self.bundle.config.model_type

    @property
    def max_history(self) -> int:
        """History items the model sees; older ones are cut (BERT4Rec keeps one slot for [MASK])."""
        return self.max_len - 1 if self.scorer.mask_idx is not None else self.max_len

    @property
    def filter_fields(self) -> list[str]:
        """Item metadata fields usable in `filters`."""
        return self.filter.fields

    @property
    def display_col(self) -> str | None:
        """The metadata column holding item titles, if any."""
        return self.bundle.display_col

    @property
    def data_fingerprint(self) -> str | None:
        """Fingerprint of the data split the model was trained on (from the bundle's run.json)."""
        value = self.bundle.run.get("data_fingerprint")
        return None if value is None else str(value)

    @property
    def fingerprint(self) -> str:
        """Short sha256 of the weights file (from the bundle manifest): identifies the served model."""
        digest = self.bundle.manifest.get("files", {}).get("model.safetensors", "")
        return str(digest)[:16] or "unknown"

    def history(self, user_id: Any) -> list[Any]:
        """The user's known items (external ids), oldest first. Raises UnknownIdError."""
        return self.vocab.decode_items(self.bundle.sequences[self.vocab.user_idx(user_id)])

    def item_info(self, item_id: Any) -> dict[str, Any]:
        """`{"item_id": ..., **metadata}` for a trained item. Raises UnknownIdError."""
        idx = self.vocab.item_idx(item_id)
        return {"item_id": self.vocab.item_ids[idx - 1], **self._meta.get(idx, {})}

    def title(self, item_id: Any) -> str | None:
        """The display title of a trained item (None without metadata). Raises UnknownIdError."""
        col = self.bundle.display_col
        value = self._meta.get(self.vocab.item_idx(item_id), {}).get(col) if col else None
        return None if value is None else str(value)

    def search_items(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Trained items whose title or id contains `query` (case-insensitive), for pickers: the item
        with exactly that id first, then titles starting with it, then the others, each group by
        training popularity. An empty query lists the most popular items.
        Returns `[{"item_id", "title", "metadata"}]` (metadata without the title column)."""
        if limit < 1:
            raise QueryError(f"limit must be a positive integer, got {limit!r}")
        q = query.strip().lower()
        pop = self.bundle.popularity[1:]
        if q:
            tier = np.full(len(pop), 3, dtype=np.int64)
            tier[np.char.find(self._search_ids, q) >= 0] = 2
            tier[np.char.find(self._search_titles, q) >= 0] = 2
            tier[np.char.startswith(self._search_titles, q)] = 1
            tier[self._search_ids == q] = 0
        else:
            tier = np.zeros(len(pop), dtype=np.int64)
        order = np.lexsort((np.arange(len(pop)), -pop, tier))  # by tier, then popularity, then index
        order = order[tier[order] < 3][:limit]
        return [self._item_payload(int(i) + 1) for i in order]

    def item_summary(self, item_id: Any) -> dict[str, Any]:
        """`{"item_id", "title", "metadata"}` of a trained item (metadata without the title column).
        Raises UnknownIdError."""
        return self._item_payload(self.vocab.item_idx(item_id))

    def _item_payload(self, idx: int) -> dict[str, Any]:
        meta = dict(self._meta.get(idx, {}))
        title = meta.pop(self.bundle.display_col, None) if self.bundle.display_col else None
        return {
            "item_id": self.vocab.item_ids[idx - 1],
            "title": None if title is None else str(title),
            "metadata": meta,
        }

    # ------------------------------------------------------------------ text cold start
    def enable_content(self, encoder: TextEncoder | None = None, cache: Path | bool = True) -> ContentIndex:
        """Embed every item's text (title + metadata) for text cold start in `item_to_item`.

        The vectors are stored beside the bundle as `content.safetensors` (`cache=True`), at a given
        path, or kept in memory only (`cache=False`); a matching stored file is reused. The default
        encoder is MiniLM (needs the `serve` extra; raises ContentUnavailableError otherwise).
        """
        if encoder is None:
            from bert4rec.inference.content import MiniLMEncoder

            encoder = MiniLMEncoder().load()
        if cache is True:
            cache_path = self.bundle.path / CONTENT_FILE if self.bundle.path is not None else None
        else:
            cache_path = Path(cache) if cache else None
        texts = item_texts(self.bundle.items, self.vocab, self.bundle.display_col)
        self.content = ContentIndex.build(texts, encoder, cache_path)
        return self.content

    # ------------------------------------------------------------------ the four query types
    def item_to_item(
        self,
        item_id: Any = None,
        k: int = 10,
        filters: Filters | None = None,
        filter_seen: bool = True,
        item_text: str | None = None,
    ) -> RecommendationList:
        """Items most similar to `item_id` (cosine of output item vectors; the item itself excluded).

        An unknown (or absent) `item_id` with an `item_text` is ranked by text similarity against the
        items' titles and metadata (path='content'; needs `enable_content()`). A known item ignores
        `item_text`. `filter_seen` has nothing else to exclude here. Raises UnknownIdError.
        """
        mask = self._check(k, filters)
        if item_id is not None and self.vocab.has_item(item_id):
            idx = self.vocab.item_idx(item_id)
            scores = self.item_index.similar(idx)
            return self._ranked(scores, np.array([idx]), k, mask, "item_vectors", 1, 1)
        text = (item_text or "").strip()
        if not text:
            if item_id is None:
                raise QueryError("item_to_item needs an item_id or an item_text")
            self.vocab.item_idx(item_id)  # raises UnknownIdError naming the id
        if self.content is None:
            if item_id is not None:
                raise UnknownIdError(
                    f"unknown item id {item_id!r} (not in the {self.vocab.n_items} trained items), and text "
                    "cold start for item_text is not enabled (Recommender.enable_content(), or "
                    "`bert4rec serve --text-cold-start`)"
                )
            raise ContentUnavailableError(
                "item_text needs text cold start, which is not enabled "
                "(Recommender.enable_content(), or `bert4rec serve --text-cold-start`)"
            )
        return self._ranked(self.content.scores(text), np.zeros(0, dtype=np.int64), k, mask, "content", 0, 0)

    def user_to_item(
        self, user_id: Any, k: int = 10, filters: Filters | None = None, filter_seen: bool = True
    ) -> RecommendationList:
        """Next items for a trained user from their stored history ([MASK] appended for BERT4Rec).
        Unknown users get global popularity (path='popularity')."""
        mask = self._check(k, filters)
        if not self.vocab.has_user(user_id):
            return self._popular(np.zeros(0, dtype=np.int64), k, mask, filter_seen)
        u = self.vocab.user_idx(user_id)
        return self._score_history(self.bundle.sequences[u], k, mask, filter_seen, user=u)

    def contextual(
        self,
        user_id: Any,
        item_id: Any,
        k: int = 10,
        filters: Filters | None = None,
        filter_seen: bool = True,
    ) -> RecommendationList:
        """Next items for a trained user who is looking at `item_id` now: stored history + that item.
        Unknown user or item ids raise UnknownIdError (guests: use `sequential`)."""
        mask = self._check(k, filters)
        u = self.vocab.user_idx(user_id)
        current = self.vocab.item_idx(item_id)
        history = np.append(self.bundle.sequences[u], current).astype(np.int64)
        return self._score_history(history, k, mask, filter_seen, user=u)

    def sequential(
        self,
        session_items: Sequence[Any] | None = None,
        k: int = 10,
        filters: Filters | None = None,
        filter_seen: bool = True,
        *,
        item_ids: Sequence[Any] | None = None,
    ) -> RecommendationList:
        """Next items after a session of item ids (oldest first; the last is the current interaction),
        for guests: no user vector. `item_ids` is an alias of `session_items`. Sessions longer than
        `max_history` keep their most recent items (`truncated=True`). Raises UnknownIdError for an
        unknown id and QueryError for an empty session (or both names given)."""
        if session_items is not None and item_ids is not None:
            raise QueryError("give the session as session_items or as item_ids, not both")
        session = session_items if session_items is not None else item_ids
        mask = self._check(k, filters)
        if session is None or len(session) == 0:
            raise QueryError("the session is empty: give at least one item id (oldest first)")
        return self._score_history(self.vocab.encode_items(session), k, mask, filter_seen, user=-1)

    # ------------------------------------------------------------------ earlier names (CLI)
    def recommend_for_user(self, user_id: Any, k: int = 10, filter_seen: bool = True) -> RecommendationList:
        """`user_to_item` without filters."""
        return self.user_to_item(user_id, k=k, filter_seen=filter_seen)

    def recommend_for_items(
        self, item_ids: Sequence[Any], k: int = 10, filter_seen: bool = True
    ) -> RecommendationList:
        """`sequential`, except that an empty session gets popularity instead of an error."""
        if len(item_ids) == 0:
            return self._popular(np.zeros(0, dtype=np.int64), k, self._check(k, None), filter_seen)
        return self.sequential(item_ids, k=k, filter_seen=filter_seen)

    # ------------------------------------------------------------------ ranking
    def _check(self, k: int, filters: Filters | None) -> np.ndarray | None:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise QueryError(f"k must be a positive integer, got {k!r}")
        return self.filter.mask(filters)

    def _score_history(
        self, history: np.ndarray, k: int, mask: np.ndarray | None, filter_seen: bool, user: int
    ) -> RecommendationList:
        if len(history) == 0:
            return self._popular(history, k, mask, filter_seen)
        scores = self.scorer.score(np.array([user]), [history])[0]
        used = min(len(history), self.max_history)
        return self._ranked(scores, history if filter_seen else None, k, mask, "model", len(history), used)

    def _popular(
        self, history: np.ndarray, k: int, mask: np.ndarray | None, filter_seen: bool
    ) -> RecommendationList:
        scores = torch.from_numpy(self.bundle.popularity.astype(np.float32))
        return self._ranked(scores, history if filter_seen else None, k, mask, "popularity", len(history), 0)

    def _ranked(
        self,
        scores: torch.Tensor,
        exclude: np.ndarray | None,
        k: int,
        mask: np.ndarray | None,
        path: ResultPath,
        history_length: int,
        used_length: int,
    ) -> RecommendationList:
        scores = scores.detach().float().clone()
        scores[0] = -torch.inf  # PAD
        if exclude is not None and len(exclude):
            scores[torch.from_numpy(np.asarray(exclude, dtype=np.int64))] = -torch.inf
        if mask is not None:
            scores[torch.from_numpy(~mask)] = -torch.inf
        k = min(k, int(torch.isfinite(scores).sum()))
        top = torch.topk(scores, k)
        display = self.bundle.display_col
        out = []
        for rank, (s, idx) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True), start=1):
            meta = dict(self._meta.get(idx, {}))
            title = meta.pop(display, None) if display else None
            title = None if title is None else str(title)
            out.append(Recommendation(rank, self.vocab.item_ids[idx - 1], float(s), title, meta))
        return RecommendationList(
            out, path, history_length, truncated=history_length > self.max_history, used_length=used_length
        )
