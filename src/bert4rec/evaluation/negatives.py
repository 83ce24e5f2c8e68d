"""Sampled negatives for the "sampled" evaluation modes.

For each user of a split, `n_negatives` items drawn without replacement, deterministically from the
seed, from the items the user never interacted with (train + validation + test items all excluded),
either uniformly or in proportion to training popularity (items never seen in training are then
never drawn). A user with fewer possible negatives gets all of them; the remaining slots are PAD.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from bert4rec.data.sequences import SequenceSplit, Split

SampledMode = Literal["sampled_uniform", "sampled_popularity"]
SAMPLED_MODES: tuple[SampledMode, ...] = ("sampled_uniform", "sampled_popularity")
NEGATIVES_POLICY = (
    "drawn once per split from cfg.seed, without replacement, excluding every item of the user's sequence "
    "(train + val + test); uniform, or proportional to training counts (items unseen in training never drawn)"
)


def draw_negatives(
    split: SequenceSplit,
    which: Split,
    mode: SampledMode,
    *,
    n_negatives: int,
    seed: int,
    popularity: np.ndarray,
) -> tuple[np.ndarray, int]:
    """(n_split_users, n_negatives) negatives for every user of `split.users(which)`, and the number of
    users short of negatives (their remaining slots are PAD).

    `popularity`: (n_items + 1,) training counts, the weights of "sampled_popularity".
    """
    n_neg = n_negatives
    users = split.users(which)
    width = split.n_items + 1
    rng = np.random.default_rng([seed, ("val", "test").index(which), SAMPLED_MODES.index(mode)])

    # every (row, item) the user ever interacted with, as sorted unique keys row * width + item
    train = [split.train[u] for u in users]
    lengths = np.fromiter((len(t) for t in train), dtype=np.int64, count=len(train))
    rows = np.arange(len(users), dtype=np.int64)
    known_rows = np.concatenate([np.repeat(rows, lengths), rows, rows])
    known_items = np.concatenate(
        [
            np.concatenate(train).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64),
            split.val_target[users],
            split.test_target[users],
        ]
    )
    keep = known_items > 0
    # sort + drop repeats: a stable (radix) sort is several times faster than np.unique here
    keys = np.sort(known_rows[keep] * width + known_items[keep], kind="stable")
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]

    uniform = mode == "sampled_uniform"
    weights = np.ones(width, dtype=np.float64) if uniform else popularity.astype(np.float64)
    weights[0] = 0.0
    positive = weights > 0
    key_rows, key_items = keys // width, keys % width
    known_mass = np.bincount(key_rows, weights=weights[key_items], minlength=len(users))
    n_known_positive = np.bincount(key_rows, weights=positive[key_items], minlength=len(users))
    n_allowed = int(positive.sum()) - n_known_positive
    accept = 1.0 - known_mass / max(weights.sum(), 1e-12)

    out = np.zeros((len(users), n_neg), dtype=np.int64)
    # rejection sampling is fast when most draws are accepted; the few heavy users (or tiny
    # catalogues) go through the exact per-user path instead
    easy = (n_allowed >= 2 * n_neg) & (accept >= 0.2)
    hard = np.flatnonzero(~easy)
    leftover = _rejection_sample(rng, out, np.flatnonzero(easy), keys, width, weights, accept, n_neg)
    hard = np.concatenate([hard, leftover])
    bounds = np.searchsorted(key_rows, np.stack([hard, hard + 1]))
    short = 0
    for r, lo, hi in zip(hard, bounds[0], bounds[1], strict=True):
        allowed_mask = positive.copy()
        allowed_mask[key_items[lo:hi]] = False
        allowed = np.flatnonzero(allowed_mask)
        if len(allowed) <= n_neg:
            out[r, : len(allowed)] = allowed
            short += len(allowed) < n_neg
        elif mode == "sampled_uniform":
            out[r] = rng.choice(allowed, size=n_neg, replace=False)
        else:
            p = weights[allowed]
            out[r] = rng.choice(allowed, size=n_neg, replace=False, p=p / p.sum())
    return out, short


def _rejection_sample(
    rng: np.random.Generator,
    out: np.ndarray,
    pending: np.ndarray,
    keys: np.ndarray,
    width: int,
    weights: np.ndarray,
    accept: np.ndarray,
    n_neg: int,
    max_rounds: int = 6,
) -> np.ndarray:
    """Fill `out[pending]` with the first n_neg distinct allowed items of an i.i.d. stream per row.

    Each row keeps its stream across rounds (more draws are appended, never redrawn), so the result
    is exactly sampling without replacement proportional to `weights` over the allowed items.
    Returns the rows still unfilled after `max_rounds`.
    """
    if len(pending) == 0:
        return pending
    uniform = bool(np.all(weights[1:] == weights[1]))
    cdf = np.cumsum(weights)
    last_positive = int(np.flatnonzero(weights)[-1])
    n_items = width - 1
    draws = np.zeros((len(pending), 0), dtype=np.int64)
    n_add = int(math.ceil(1.2 * n_neg / max(float(np.median(accept[pending])), 0.2))) + 16
    for _ in range(max_rounds):
        if uniform:
            new = rng.integers(1, n_items + 1, size=(len(pending), n_add))
        else:
            u = rng.random((len(pending), n_add)) * cdf[-1]
            new = np.minimum(np.searchsorted(cdf, u, side="right"), last_positive)
        draws = np.concatenate([draws, new], axis=1)
        query = pending[:, None] * width + draws
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        valid = keys[pos] != query if len(keys) else np.ones(draws.shape, dtype=bool)
        # first occurrence within each row: a stable sort keeps the earliest draw of each item first
        order = np.argsort(draws, axis=1, kind="stable")
        ordered = np.take_along_axis(draws, order, axis=1)
        dup_sorted = np.zeros(draws.shape, dtype=bool)
        dup_sorted[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
        dup = np.empty_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        valid &= ~dup
        done = valid.sum(axis=1) >= n_neg
        if done.any():
            take = valid[done] & (np.cumsum(valid[done], axis=1) <= n_neg)
            out[pending[done]] = draws[done][take].reshape(-1, n_neg)
        pending, draws = pending[~done], draws[~done]
        if len(pending) == 0:
            break
        n_add = draws.shape[1]  # double each row's stream
    return pending
