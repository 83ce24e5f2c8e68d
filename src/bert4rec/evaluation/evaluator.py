"""One evaluator for every model: leave-one-out ranking of each user's held-out target.

Protocol (also written into every result under "protocol"):

* Every model goes through `Scorer.score(users, histories) -> (B, n_items + 1)`; nothing else.
* Column 0 (PAD) is never a candidate. With `filter_seen`, the items of the user's *input history*
  are excluded from the ranking (score -inf) **except the target itself**, which is never excluded
  (it may reappear in the history when a dataset keeps repeated interactions).
* Full ranking: the target is ranked against every remaining catalogue item.
* Sampled ranking: the target is ranked against `n_negatives` negatives per user, drawn once per
  Evaluator and split, deterministically from `cfg.seed`, without replacement, from the items the user
  never interacted with (train + validation + test items all excluded), either uniformly or in
  proportion to training popularity (items never seen in training are then never drawn). A user with
  fewer possible negatives gets all of them (the remaining slots are PAD and never outrank the target).
* Ties are broken pessimistically (see `metrics.rank_of_target`).
* coverage@10: share of catalogue items that appear in at least one user's full-ranking top 10.
* Long tail: items are sorted by training popularity (count, ties by item index); "head" = the
  top 20% of catalogue items, the remaining items are split into two equal halves, "mid" (more
  popular) and "tail" (less popular, including items never seen in training). Users are bucketed by
  the bucket of their target, and hr@10 / ndcg@10 (full ranking) are reported per bucket.
* Genre metrics (only with item genres, see `evaluation.genres`; full ranking only, never sampled):
  genre_precision@k and genre_ndcg@k for every k of `cfg.ks`, over the full-ranking top-k list (after
  the exclusions above) and the users whose target has a genre; definitions in
  `metrics.GENRE_PRECISION_DEFINITION` / `GENRE_NDCG_DEFINITION`. The ideal list of genre_ndcg is
  drawn from the same candidates the model ranks (catalogue minus PAD and, with `filter_seen`, the
  input history), so a perfect genre ranker scores 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from bert4rec.config import EvalConfig
from bert4rec.data.sequences import SequenceSplit, Split
from bert4rec.errors import Bert4RecError
from bert4rec.evaluation.genres import ItemGenres
from bert4rec.evaluation.long_tail import LONG_TAIL_POLICY, item_buckets, long_tail_metrics
from bert4rec.evaluation.metrics import (
    GENRE_NDCG_DEFINITION,
    GENRE_PRECISION_DEFINITION,
    TIE_POLICY,
    genre_metrics_per_user,
    metric_table,
    ndcg,
    rank_of_target,
)
from bert4rec.evaluation.negatives import NEGATIVES_POLICY, SAMPLED_MODES, SampledMode, draw_negatives
from bert4rec.models.base import Scorer

Mode = Literal["full", "sampled_uniform", "sampled_popularity"]
MODES: tuple[Mode, ...] = ("full", *SAMPLED_MODES)
COVERAGE_K = 10
GENRE_CHUNK_ELEMENTS = 1 << 24  # users x items per chunk of the genre metrics' ideal-list tensors

SEEN_POLICY = "items of the input history get -inf, except the target, which is never excluded"
GENRE_LIST_POLICY = (
    "full ranking only: the top-k list is the k best-scoring candidates in torch.topk order (ties at the "
    "cut-off broken by torch.topk), excluded (-inf) slots count as no item; users whose target has no "
    "genre are left out"
)


class EvaluationError(Bert4RecError, ValueError):
    """Evaluation cannot run as asked (users without a target, wrong score shape, NaN scores)."""


@dataclass
class _Ranks:
    """What one pass over the users' score batches collects (per user, in user order)."""

    full: list[torch.Tensor] = field(default_factory=list)  # (B,) rank of the target, full ranking
    sampled: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # mode -> (B,) sampled ranks
    genre: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # metric -> (B,), NaN = no genre
    covered: torch.Tensor | None = None  # (n_items + 1,) bool: item in some user's top COVERAGE_K


class Evaluator:
    """Leave-one-out evaluation of any `Scorer` on a `SequenceSplit` (protocol in the module docstring).

    Negatives for the sampled modes are drawn lazily, once per (split, mode), and cached, so repeated
    evaluations (every epoch, several models) rank against exactly the same candidates.

    `genres` (from `evaluation.genres.item_genres`, for the items of `split`) adds the genre metrics
    to the full ranking; without it they are left out, never reported as zero.
    """

    def __init__(self, split: SequenceSplit, cfg: EvalConfig, genres: ItemGenres | None = None) -> None:
        self.split = split
        self.cfg = cfg
        if genres is not None and genres.matrix.shape[0] != split.n_items + 1:
            raise EvaluationError(
                f"the genre matrix has {genres.matrix.shape[0]} rows, expected n_items + 1 = "
                f"{split.n_items + 1}: build it with item_genres(items, split.vocab, column) for this split"
            )
        self.genres = genres
        # hr@10 / ndcg@10 are always reported: early stopping, tables and the long-tail breakdown use them
        self.ks = sorted(set(cfg.ks) | {10})
        self._popularity: np.ndarray | None = None
        self._negatives: dict[tuple[str, SampledMode], tuple[np.ndarray, int]] = {}

    # ------------------------------------------------------------------ public API

    def evaluate(
        self,
        scorer: Scorer,
        which: Split = "test",
        users: np.ndarray | None = None,
        modes: Sequence[Mode] = MODES,
    ) -> dict[str, Any]:
        """Rank each user's `which` target and return metrics per mode plus coverage and long tail.

        `users`: internal user indices with a `which` target (default: all of them).
        Returns {"full": {metric: value}, "sampled_uniform": {...}, "sampled_popularity": {...},
        "coverage@10": float, "long_tail": {"head"|"mid"|"tail": {...}}, "n_users": int,
        "protocol": {...}}; only the requested modes appear (coverage and long tail come from the full
        ranking, which is always computed). With genres, "full" also holds "genre_precision@k" and
        "genre_ndcg@k" for each k.
        """
        modes = tuple(modes)
        bad = [m for m in modes if m not in MODES]
        if bad:
            raise EvaluationError(f"unknown evaluation mode(s) {bad}; choose from {', '.join(MODES)}")
        users = self._users(which, users)
        targets = self.split.targets_all(which)[users]
        sampled = [m for m in SAMPLED_MODES if m in modes]
        with_genres = self.genres is not None and "full" in modes
        ranks = self._rank(scorer, which, users, targets, sampled, with_genres)

        full_ranks = torch.cat(ranks.full).numpy()
        out: dict[str, Any] = {}
        if "full" in modes:
            out["full"] = metric_table(full_ranks, self.ks) | self._genre_means(ranks.genre)
        for m in sampled:
            out[m] = metric_table(torch.cat(ranks.sampled[m]).numpy(), self.ks)
        assert ranks.covered is not None  # at least one batch ran
        out["coverage@10"] = float(ranks.covered[1:].sum().item()) / self.split.n_items
        out["long_tail"] = long_tail_metrics(full_ranks, targets, self.popularity())
        out["n_users"] = int(len(users))
        out["protocol"] = self._protocol(which, sampled, targets if with_genres else None)
        return out

    def evaluate_ndcg10(self, scorer: Scorer, which: Split = "val", users: np.ndarray | None = None) -> float:
        """Full-ranking NDCG@10 only: the cheap per-epoch early-stopping signal (protocol of `evaluate`)."""
        users = self._users(which, users)
        targets = self.split.targets_all(which)[users]
        parts = [rank_of_target(s, t).cpu() for _, _, s, t, _ in self._batches(scorer, which, users, targets)]
        return ndcg(torch.cat(parts).numpy(), 10)

    def negatives(self, which: Split, mode: SampledMode, users: np.ndarray | None = None) -> np.ndarray:
        """(n_users, n_negatives) sampled negative item indices for `users` (default: all with a target).

        Drawn once per (split, mode) for all users of the split, so a user's negatives do not depend on
        which other users are evaluated. Index 0 (PAD) only pads users with too few possible negatives.
        """
        if mode not in SAMPLED_MODES:
            raise EvaluationError(f"negatives exist for {', '.join(SAMPLED_MODES)}, not {mode!r}")
        key = (which, mode)
        if key not in self._negatives:
            self._negatives[key] = draw_negatives(
                self.split,
                which,
                mode,
                n_negatives=self.cfg.n_negatives,
                seed=self.cfg.seed,
                popularity=self.popularity(),
            )
        negs = self._negatives[key][0]
        if users is None:
            return negs.copy()
        return negs[self._positions(which, np.asarray(users, dtype=np.int64))]

    # ------------------------------------------------------------------ ranking

    def _rank(
        self,
        scorer: Scorer,
        which: Split,
        users: np.ndarray,
        targets: np.ndarray,
        sampled: Sequence[SampledMode],
        with_genres: bool,
    ) -> _Ranks:
        """One pass over the score batches: full ranks, sampled ranks, coverage and genre metrics."""
        negatives = {m: self.negatives(which, m, users) for m in sampled}
        ranks = _Ranks(sampled={m: [] for m in sampled})
        k_cov = min(COVERAGE_K, self.split.n_items)
        k_top = min(max([k_cov, *self.ks]) if with_genres else k_cov, self.split.n_items)
        genre_matrix: torch.Tensor | None = None
        for start, stop, scores, target, hist in self._batches(scorer, which, users, targets):
            ranks.full.append(rank_of_target(scores, target).cpu())
            values, top = scores.topk(k_top, dim=1)  # (B, k_top), best first
            finite = torch.isfinite(values)
            if ranks.covered is None:
                ranks.covered = torch.zeros(scores.shape[1], dtype=torch.bool, device=scores.device)
            ranks.covered[top[:, :k_cov][finite[:, :k_cov]]] = True
            if with_genres:
                assert self.genres is not None
                if genre_matrix is None:
                    genre_matrix = torch.as_tensor(self.genres.matrix, device=scores.device)
                # an excluded (-inf) item in the top k means the ranking ran out of candidates: no item
                no_item = torch.isneginf(values)
                self._genre_batch(ranks.genre, genre_matrix, top.masked_fill(no_item, 0), target, hist)
            for m in sampled:
                negs = torch.as_tensor(negatives[m][start:stop], device=scores.device)
                candidates = torch.cat([target.unsqueeze(1), negs], dim=1)  # (B, 1 + n_neg), target first
                zero = torch.zeros(len(candidates), dtype=torch.int64, device=scores.device)
                ranks.sampled[m].append(rank_of_target(scores.gather(1, candidates), zero).cpu())
        return ranks

    def _protocol(
        self, which: Split, sampled: Sequence[SampledMode], targets: np.ndarray | None
    ) -> dict[str, Any]:
        """The "protocol" entry of a result; `targets` (the users' targets) only with genre metrics."""
        protocol: dict[str, Any] = {
            "split": which,
            "filter_seen": self.cfg.filter_seen,
            "seen_policy": SEEN_POLICY if self.cfg.filter_seen else "no filtering (PAD only)",
            "n_negatives": self.cfg.n_negatives,
            "negatives": NEGATIVES_POLICY,
            "users_short_of_negatives": {m: self._negatives[(which, m)][1] for m in sampled},
            "seed": self.cfg.seed,
            "tie_policy": TIE_POLICY,
            "long_tail": LONG_TAIL_POLICY,
        }
        if targets is not None:
            assert self.genres is not None
            labelled_targets = self.genres.matrix[targets].any(axis=1)
            protocol["genres"] = {
                "column": self.genres.column,
                "n_genres": len(self.genres.names),
                "n_items_with_genres": self.genres.n_items_with_genres,
                "n_users": int(labelled_targets.sum()),  # users whose target has a genre
                "genre_precision": GENRE_PRECISION_DEFINITION,
                "genre_ndcg": GENRE_NDCG_DEFINITION,
                "list": GENRE_LIST_POLICY,
            }
        return protocol

    def _users(self, which: Split, users: np.ndarray | None) -> np.ndarray:
        if which not in ("val", "test"):
            raise EvaluationError(f"which must be 'val' or 'test', got {which!r}")
        users = self.split.users(which) if users is None else np.asarray(users, dtype=np.int64).reshape(-1)
        if len(users) == 0:
            raise EvaluationError(
                f"no users to evaluate on the {which} split (a user needs >= 3 interactions to have one)"
            )
        self._positions(which, users)  # validates that every user has a target
        return users

    def _positions(self, which: Split, users: np.ndarray) -> np.ndarray:
        """Row of each user in `split.users(which)` (sorted); raises for users without a target."""
        all_users = self.split.users(which)
        pos = np.searchsorted(all_users, users)
        ok = pos < len(all_users)
        ok[ok] = all_users[pos[ok]] == users[ok]
        if not ok.all():
            bad = users[~ok]
            raise EvaluationError(
                f"{len(bad)} user index(es) have no {which} target (e.g. {bad[:5].tolist()}); "
                f"evaluate only users from split.users({which!r})"
            )
        return pos

    def _batches(
        self, scorer: Scorer, which: Split, users: np.ndarray, targets: np.ndarray
    ) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor, list[np.ndarray]]]:
        """Yield (start, stop, scores (B, n_items + 1) with exclusions applied, targets (B,), histories)."""
        histories = self.split.inputs(which, users)
        bs = self.cfg.batch_size
        with torch.inference_mode():
            for start in range(0, len(users), bs):
                stop = min(start + bs, len(users))
                hist = histories[start:stop]
                scores = self._scores(scorer, users[start:stop], hist)
                target = torch.as_tensor(targets[start:stop], dtype=torch.int64, device=scores.device)
                self._exclude(scores, hist, target)
                yield start, stop, scores, target, hist

    def _scores(self, scorer: Scorer, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        name = getattr(scorer, "name", type(scorer).__name__)
        raw = scorer.score(users, histories)
        scores = raw.detach() if isinstance(raw, torch.Tensor) else torch.as_tensor(np.asarray(raw))
        expected = (len(users), self.split.n_items + 1)
        if tuple(scores.shape) != expected:
            raise EvaluationError(
                f"scorer {name!r} returned scores of shape {tuple(scores.shape)}, expected {expected} "
                "(batch, n_items + 1): column j scores item index j and column 0 is PAD"
            )
        dtype = scores.dtype if scores.dtype in (torch.float32, torch.float64) else torch.float32
        # always a private copy: exclusions are written in place and must not touch the scorer's own tensors
        scores = scores.to(dtype=dtype, copy=True)
        nan_rows = torch.isnan(scores).any(dim=1)
        if nan_rows.any():
            raise EvaluationError(
                f"scorer {name!r} returned NaN scores for {int(nan_rows.sum())} of {len(users)} users; "
                "the model probably diverged: retrain it (e.g. with a lower train.lr)"
            )
        return scores

    def _exclude(self, scores: torch.Tensor, histories: Sequence[np.ndarray], target: torch.Tensor) -> None:
        """PAD -> -inf; with filter_seen also the input-history items, but never the target."""
        scores[:, 0] = -math.inf
        index = self._seen_index(histories, scores.device)
        if index is None:
            return
        target_scores = scores.gather(1, target.unsqueeze(1))  # (B, 1), restored after masking
        scores[index] = -math.inf
        scores.scatter_(1, target.unsqueeze(1), target_scores)

    def _seen_index(
        self, histories: Sequence[np.ndarray], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(rows, cols) of the input-history items that filter_seen excludes; None when nothing is."""
        if not self.cfg.filter_seen:
            return None
        lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
        if lengths.sum() == 0:
            return None
        cols = torch.as_tensor(np.concatenate(histories).astype(np.int64), device=device)
        rows = torch.as_tensor(np.repeat(np.arange(len(histories)), lengths), device=device)
        return rows, cols

    # ------------------------------------------------------------------ genres

    @staticmethod
    def _genre_means(parts: dict[str, list[torch.Tensor]]) -> dict[str, float]:
        """Mean of each genre metric over the users whose target has a genre (NaN when none has)."""
        out: dict[str, float] = {}
        for key, values in parts.items():
            per_user = torch.cat(values)
            labelled = per_user[~torch.isnan(per_user)]
            out[key] = float(labelled.mean()) if labelled.numel() else float("nan")
        return out

    def _genre_batch(
        self,
        parts: dict[str, list[torch.Tensor]],
        genres: torch.Tensor,
        top: torch.Tensor,
        target: torch.Tensor,
        histories: Sequence[np.ndarray],
    ) -> None:
        """Append per-user genre_precision@k / genre_ndcg@k of one batch to `parts` (NaN = no genre).

        `top` (B, k_top) item indices best first, 0 where the slot holds an excluded item. The ideal
        list of genre_ndcg comes from the ranking's candidates: PAD and the filtered history are excluded
        exactly as in `_exclude`, the target never is.
        """
        n_cols = self.split.n_items + 1
        if top.shape[1] < max(self.ks):  # a catalogue smaller than k: the missing slots hold no item
            top = torch.nn.functional.pad(top, (0, max(self.ks) - top.shape[1]), value=0)
        # the ideal list needs (rows, n_items + 1) relevance and mask tensors: bound them to ~2**24
        # elements per chunk so that large catalogues do not double the memory of the score batch
        rows = max(1, GENRE_CHUNK_ELEMENTS // n_cols)
        for lo in range(0, len(target), rows):
            hi = min(lo + rows, len(target))
            excluded = torch.zeros(hi - lo, n_cols, dtype=torch.bool, device=genres.device)
            excluded[:, 0] = True
            index = self._seen_index(histories[lo:hi], genres.device)
            if index is not None:
                excluded[index] = True
                chunk_target = target[lo:hi].to(genres.device)
                excluded[torch.arange(hi - lo, device=genres.device), chunk_target] = False
            metrics = genre_metrics_per_user(top[lo:hi], target[lo:hi], genres, self.ks, excluded)
            for key, values in metrics.items():
                parts.setdefault(key, []).append(values.cpu())

    # ------------------------------------------------------------------ long tail

    def popularity(self) -> np.ndarray:
        """(n_items + 1,) training interaction counts (cached)."""
        if self._popularity is None:
            self._popularity = self.split.item_popularity()
        return self._popularity

    def item_buckets(self) -> np.ndarray:
        """(n_items + 1,) bucket of each item: 0 = head, 1 = mid, 2 = tail (PAD gets -1)."""
        return item_buckets(self.popularity())
