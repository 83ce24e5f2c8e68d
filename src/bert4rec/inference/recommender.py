"""The Recommender facade: external ids in, ranked items with titles out.

The CLI and the HTTP API only talk to this class; it never imports training code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bert4rec.artifacts import Bundle, load_bundle
from bert4rec.inference.scoring import TransformerScorer


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
    path: str  # how the list was produced: "model" or "popularity" (unknown user / empty history)
    history_length: int
    truncated: bool = False  # the history was longer than max_len and only its most recent part was used


class Recommender:
    """Ranks items for a known user, or for an ad-hoc session of item ids."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.vocab = bundle.vocab
        self.scorer = TransformerScorer(bundle.model, name=bundle.config.model_type)
        self.max_len = bundle.config.model.max_len
        self._meta: dict[int, dict[str, Any]] = {}
        if bundle.items is not None:
            for row in bundle.items.to_dicts():
                item_id = row.pop("item_id")
                if self.vocab.has_item(item_id):
                    self._meta[self.vocab.item_idx(item_id)] = row

    @classmethod
    def load(cls, path: Path | str) -> Recommender:
        return cls(load_bundle(Path(path)))

    def history(self, user_id: Any) -> list[Any]:
        """The user's known items (external ids), oldest first. Raises UnknownIdError."""
        return self.vocab.decode_items(self.bundle.sequences[self.vocab.user_idx(user_id)])

    def item_info(self, item_id: Any) -> dict[str, Any]:
        idx = self.vocab.item_idx(item_id)
        return {"item_id": self.vocab.item_ids[idx - 1], **self._meta.get(idx, {})}

    def recommend_for_user(self, user_id: Any, k: int = 10, filter_seen: bool = True) -> RecommendationList:
        """Next items for a trained user from their stored history ([MASK] appended for BERT4Rec).
        Unknown users get global popularity (path='popularity')."""
        if not self.vocab.has_user(user_id):
            return self._ranked(
                self._popularity_scores(), np.zeros(0, dtype=np.int64), k, filter_seen, "popularity"
            )
        u = self.vocab.user_idx(user_id)
        return self._score_history(self.bundle.sequences[u], k, filter_seen, user=u)

    def recommend_for_items(
        self, item_ids: Sequence[Any], k: int = 10, filter_seen: bool = True
    ) -> RecommendationList:
        """Next items after a session of item ids (oldest first). Unknown ids raise UnknownIdError."""
        history = self.vocab.encode_items(item_ids)
        return self._score_history(history, k, filter_seen, user=-1)

    def _score_history(self, history: np.ndarray, k: int, filter_seen: bool, user: int) -> RecommendationList:
        if len(history) == 0:
            return self._ranked(self._popularity_scores(), history, k, filter_seen, "popularity")
        scores = self.scorer.score(np.array([user]), [history])[0]
        return self._ranked(scores, history, k, filter_seen, "model")

    def _popularity_scores(self) -> torch.Tensor:
        return torch.from_numpy(self.bundle.popularity.astype(np.float32))

    def _ranked(
        self, scores: torch.Tensor, history: np.ndarray, k: int, filter_seen: bool, path: str
    ) -> RecommendationList:
        scores = scores.clone()
        scores[0] = -torch.inf
        if filter_seen and len(history):
            scores[torch.from_numpy(np.asarray(history, dtype=np.int64))] = -torch.inf
        k = max(0, min(k, int(torch.isfinite(scores).sum())))
        top = torch.topk(scores, k)
        display = self.bundle.display_col
        out = []
        for rank, (s, idx) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True), start=1):
            meta = dict(self._meta.get(idx, {}))
            title = meta.pop(display, None) if display else None
            out.append(Recommendation(rank, self.vocab.item_ids[idx - 1], float(s), title, meta))
        used = self.max_len - 1 if self.scorer.mask_idx is not None else self.max_len
        return RecommendationList(out, path, len(history), truncated=len(history) > used)
