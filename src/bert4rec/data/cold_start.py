"""Cold-start items: hold a set of items out of training to measure how well a model recommends them.

`hold_out_items` removes the held-out items from every training sequence, so the model never sees them
in a training or validation input; they stay in the vocabulary (and keep their metadata) so that
they can still be scored. Their role as targets:

* a held-out **validation** target is dropped (set to 0): model selection must not look at them, and
  the user's test input (training part + validation item) then leaves it out too;
* a held-out **test** target is kept: those users are the "cold" users (`cold_users`) whose
  ranking of a never-seen item the benchmark measures.

So no held-out item appears in any training, validation or test input (tests/data/test_cold_start.py
proves it). Pure functions: the input split is never modified.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from bert4rec.data.sequences import SequenceSplit


def choose_cold_items(split: SequenceSplit, share: float, seed: int) -> np.ndarray:
    """A seeded uniform random `share` of the catalogue (at least one item), as sorted item indices."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must be between 0 and 1 (exclusive), got {share}")
    n = max(1, round(share * split.n_items))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.arange(1, split.n_items + 1), size=n, replace=False)).astype(np.int64)


def hold_out_items(split: SequenceSplit, items: np.ndarray) -> SequenceSplit:
    """A copy of `split` in which `items` (item indices) never occur in an input (see module docstring)."""
    items = np.unique(np.asarray(items, dtype=np.int64))
    if len(items) and (items.min() < 1 or items.max() > split.n_items):
        raise ValueError(f"held-out item indices must be in 1..{split.n_items}")
    held = np.zeros(split.n_items + 2, dtype=bool)  # lookup table by item index
    held[items] = True
    train = [seq[~held[seq]] for seq in split.train]
    val_target = np.where(held[split.val_target], 0, split.val_target)
    stats = dict(split.stats)
    stats.update(
        held_out_items=int(len(items)),
        held_out_train_interactions=int(
            sum(len(a) - len(b) for a, b in zip(split.train, train, strict=True))
        ),
        held_out_val_targets=int((val_target != split.val_target).sum()),
        cold_test_users=int(len(cold_users(split, items))),
    )
    fingerprint = hashlib.sha256(split.fingerprint.encode() + items.tobytes()).hexdigest()[:16]
    test_target = split.test_target.copy()
    return replace(
        split,
        train=train,
        val_target=val_target,
        test_target=test_target,
        stats=stats,
        fingerprint=fingerprint,
    )


def cold_users(split: SequenceSplit, items: np.ndarray) -> np.ndarray:
    """Test users (sorted indices) whose test target is one of `items`."""
    users = split.users("test")
    return users[np.isin(split.test_target[users], np.asarray(items, dtype=np.int64))]
