"""The Recommender facade: external ids in, ranked items with titles out.

Four query types, each with `k`, metadata `filters` and `filter_seen`:
    item_to_item   items similar to one item (cosine of the model's output item vectors); an unknown
                   item with a free-text description falls back to MiniLM text similarity
    user_to_item   next items for a known user's stored history ([MASK] appended for BERT4Rec);
                   unknown users get global popularity
    contextual     a known user's history with the item they are looking at now appended
    sequential     an ad-hoc session of item ids (guests), oldest first (`session_items`)

Each query reads the served state (`inference.served.ServedModel`, which the Recommender extends
with these queries: the catalogue, its updates and the indexes) once, so a catalogue update in
between never mixes two versions.

The model path searches intent vectors (`inference.intents`: the last hidden state with a 1
appended) against item vectors with the output bias folded in, through an exact or an HNSW index
(`inference.index`); every stored user's intent can be computed once at load, so `user_to_item` is
one vector search.

The CLI and the HTTP API only talk to this class; it never imports training code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from bert4rec.artifacts import Bundle
from bert4rec.errors import ContentUnavailableError, QueryError, UnknownIdError
from bert4rec.inference.filters import FilterValue
from bert4rec.inference.index import SearchResult
from bert4rec.inference.intents import INTENTS_FILE, IntentEncoder, UserIntents
from bert4rec.inference.served import ServedModel, ServedState

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
    # the intent vector [h, 1] (D + 1,) the list was searched with (model path; see inference.intents)
    vector: np.ndarray | None = None


class Recommender(ServedModel):
    """Ranks items for known users, ad-hoc sessions, similar items and (optionally) free text."""

    def __init__(
        self,
        bundle: Bundle,
        backend: str = "torch",
        threads: int = 1,
        *,
        precompute: bool = False,
        intents_cache: bool = False,
        **served: Any,
    ) -> None:
        """`backend`, `threads` and `served` (catalog, new_item_exposure, index, index_threshold,
        qdrant) are `ServedModel`'s. `precompute` encodes every stored user history once now, so
        `user_to_item` is one vector search instead of a model call (4.8 s for ML-1M's 6,040
        users, 50-item window, one core): what a server wants, not a one-shot query (the server
        turns it on; see `api.deps.load_served`). `intents_cache` (implies `precompute`) stores
        them beside the bundle as intents.safetensors and reuses a matching file (what `serve
        --workers N` does, so N processes encode once)."""
        super().__init__(bundle, backend, threads, **served)
        # stored histories hold trained items only, whose input embeddings added items never change:
        # their intents are computed once, from the bundle's model
        self.user_intents: UserIntents | None = None
        if precompute or intents_cache:
            cache = bundle.path / INTENTS_FILE if intents_cache and bundle.path is not None else None
            digest = str(bundle.manifest.get("files", {}).get("model.safetensors", ""))
            self.user_intents = UserIntents.compute(
                IntentEncoder(bundle.model), bundle.sequences, digest, cache
            )

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
        state = self._state
        vocab = state.catalog.vocab
        mask = self._check(state, k, filters)
        if item_id is not None and vocab.has_item(item_id):
            idx = vocab.item_idx(item_id)
            found = state.item_index.search(state.item_index.vector(idx), k, exclude=[idx], mask=mask)
            return self._listed(state, found, path="item_vectors", history_length=1, used_length=1)
        text = (item_text or "").strip()
        if not text:
            if item_id is None:
                raise QueryError("item_to_item needs an item_id or an item_text")
            vocab.item_idx(item_id)  # raises UnknownIdError naming the id
        if state.content is None:
            if item_id is not None:
                raise UnknownIdError(
                    f"unknown item id {item_id!r} (not in the {vocab.n_items} items), and text "
                    "cold start for item_text is not enabled (Recommender.enable_content(), or "
                    "`bert4rec serve --text-cold-start`)"
                )
            raise ContentUnavailableError(
                "item_text needs text cold start, which is not enabled "
                "(Recommender.enable_content(), or `bert4rec serve --text-cold-start`)"
            )
        return self._ranked(
            state, state.content.scores(text), exclude=None, k=k, mask=mask, path="content",
            history_length=0, used_length=0,
        )  # fmt: skip

    def user_to_item(
        self, user_id: Any, k: int = 10, filters: Filters | None = None, filter_seen: bool = True
    ) -> RecommendationList:
        """Next items for a trained user from their stored history ([MASK] appended for BERT4Rec).
        Unknown users get global popularity (path='popularity')."""
        state = self._state
        mask = self._check(state, k, filters)
        vocab = state.catalog.vocab
        if not vocab.has_user(user_id):
            return self._popular(state, np.zeros(0, dtype=np.int64), k=k, mask=mask, filter_seen=filter_seen)
        u = vocab.user_idx(user_id)
        intent = self.user_intents[u] if self.user_intents is not None else None
        return self._score_history(
            state, self.bundle.sequences[u], k=k, mask=mask, filter_seen=filter_seen, user=u, intent=intent
        )

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
        state = self._state
        mask = self._check(state, k, filters)
        vocab = state.catalog.vocab
        u = vocab.user_idx(user_id)
        current = vocab.item_idx(item_id)
        history = np.append(self.bundle.sequences[u], current).astype(np.int64)
        return self._score_history(state, history, k=k, mask=mask, filter_seen=filter_seen, user=u)

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
        state = self._state
        mask = self._check(state, k, filters)
        if session is None or len(session) == 0:
            raise QueryError("the session is empty: give at least one item id (oldest first)")
        history = state.catalog.vocab.encode_items(session)
        return self._score_history(state, history, k=k, mask=mask, filter_seen=filter_seen, user=-1)

    # ------------------------------------------------------------------ ranking
    @staticmethod
    def _check(state: ServedState, k: int, filters: Filters | None) -> np.ndarray | None:
        """The (n_items + 1,) mask of items a query may return: active (not retired) and passing the
        filters; None when every item may be returned (no filter, nothing retired: the index's
        unfiltered fast path). Raises QueryError for a bad k, FilterError for a bad filter."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise QueryError(f"k must be a positive integer, got {k!r}")
        passing = state.catalog.filter.mask(filters)
        if passing is None:
            return state.catalog.active if state.catalog.retired.any() else None
        return passing & state.catalog.active

    def _score_history(
        self,
        state: ServedState,
        history: np.ndarray,
        *,
        k: int,
        mask: np.ndarray | None,
        filter_seen: bool,
        user: int,
        intent: np.ndarray | None = None,
    ) -> RecommendationList:
        """Rank by the model for `history`; `intent` is its precomputed intent vector, if any."""
        if len(history) == 0:
            return self._popular(state, history, k=k, mask=mask, filter_seen=filter_seen)
        used = min(len(history), self.max_history)
        exclude = history if filter_seen else None
        if intent is None and self.backend != "torch":
            # the ONNX export yields scores, not hidden states: score every item
            scores = state.scorer.score(np.array([user]), [history])[0]
            return self._ranked(
                state, scores, exclude=exclude, k=k, mask=mask, path="model",
                history_length=len(history), used_length=used,
            )  # fmt: skip
        if intent is None:
            intent = state.intents.encode_one(user, history)
        found = state.model_index.search(intent, k, exclude=exclude, mask=mask)
        return self._listed(
            state, found, path="model", history_length=len(history), used_length=used, vector=intent
        )

    def _popular(
        self, state: ServedState, history: np.ndarray, *, k: int, mask: np.ndarray | None, filter_seen: bool
    ) -> RecommendationList:
        scores = torch.from_numpy(state.catalog.popularity.astype(np.float32))
        return self._ranked(
            state, scores, exclude=history if filter_seen else None, k=k, mask=mask, path="popularity",
            history_length=len(history), used_length=0,
        )  # fmt: skip

    def _ranked(
        self,
        state: ServedState,
        scores: torch.Tensor,
        *,
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
        found = SearchResult(top.values.numpy(), top.indices.numpy())
        return self._listed(state, found, path=path, history_length=history_length, used_length=used_length)

    def _listed(
        self,
        state: ServedState,
        found: SearchResult,
        *,
        path: ResultPath,
        history_length: int,
        used_length: int,
        vector: np.ndarray | None = None,
    ) -> RecommendationList:
        """The found item indices as Recommendations with ids, titles and metadata."""
        catalog = state.catalog
        out = []
        pairs = zip(found.scores.tolist(), found.indices.tolist(), strict=True)
        for rank, (s, idx) in enumerate(pairs, start=1):
            payload = catalog.payload(idx)
            out.append(
                Recommendation(rank, payload["item_id"], float(s), payload["title"], payload["metadata"])
            )
        return RecommendationList(
            out,
            path,
            history_length,
            truncated=history_length > self.max_history,
            used_length=used_length,
            vector=vector,
        )
