"""Time-ordered user sequences and the leave-one-out split.

For every user with at least 3 interactions: the last item is the test target, the second last
the validation target, the rest is training data. Validation input = training part; test input =
training part + validation item. The test item therefore never appears in any training or
validation input (tests/data/test_sequences.py proves it). Users with fewer than 3 interactions
only contribute training data and are counted.

`val_users=N` keeps the validation item out for a fixed random sample of N of those users only;
every other one trains on it (training part = all but the test item, no validation target), so the
model also learns each user's most recent transition. The test users are the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from bert4rec.data.interactions import Interactions
from bert4rec.data.vocab import Vocab

Split = Literal["val", "test"]


@dataclass
class SequenceSplit:
    """Leave-one-out split in internal indices. User index u <-> `vocab.user_ids[u]`."""

    vocab: Vocab
    train: list[np.ndarray]  # per user: item indices (int64), oldest first, without the last two
    val_target: np.ndarray  # (n_users,) item index of the second last item, 0 if the user has none
    test_target: np.ndarray  # (n_users,) item index of the last item, 0 if the user has none
    stats: dict[str, Any]
    fingerprint: str = ""

    @property
    def n_items(self) -> int:
        return self.vocab.n_items

    def users(self, split: Split) -> np.ndarray:
        """Indices of users that have a target in this split."""
        return np.flatnonzero(self.targets_all(split) > 0)

    def targets_all(self, split: Split) -> np.ndarray:
        return self.val_target if split == "val" else self.test_target

    def inputs(self, split: Split, users: np.ndarray | None = None) -> list[np.ndarray]:
        """Input histories for predicting the `split` target (test input includes the validation item)."""
        users = self.users(split) if users is None else users
        if split == "val":
            return [self.train[u] for u in users]
        return [
            np.append(self.train[u], self.val_target[u]) if self.val_target[u] else self.train[u]
            for u in users
        ]

    def item_popularity(self) -> np.ndarray:
        """(n_items + 1,) interaction counts in the training part; index 0 (PAD) is 0."""
        counts = np.zeros(self.n_items + 1, dtype=np.int64)
        if self.train:
            np.add.at(counts, np.concatenate(self.train), 1)
        counts[0] = 0
        return counts


def build_split(data: Interactions, val_users: int | None = None) -> SequenceSplit:
    """Map ids to indices and split each user's time-ordered sequence leave-one-out; with
    `val_users`, only that many users (a fixed sample, seed 0) keep a validation target."""
    frame = data.frame  # already sorted by user, then timestamp, ties in file order
    item_ids = frame["item_id"].unique().sort().to_list()
    user_counts = frame.group_by("user_id", maintain_order=True).len()
    vocab = Vocab(item_ids, user_counts["user_id"].to_list())
    item_idx = (
        frame.select(
            pl.col("item_id").replace_strict(item_ids, range(1, len(item_ids) + 1), return_dtype=pl.Int64)
        )
        .to_series()
        .to_numpy()
    )
    # polars counts are UInt32 and their cumsum is uint64, which numpy mixes with the int 0 into float64
    bounds = np.concatenate([[0], np.cumsum(user_counts["len"].to_numpy(), dtype=np.int64)])
    n_users = vocab.n_users
    train: list[np.ndarray] = []
    val_target = np.zeros(n_users, dtype=np.int64)
    test_target = np.zeros(n_users, dtype=np.int64)
    has_targets = np.diff(bounds) >= 3
    eligible = np.flatnonzero(has_targets)
    validated = has_targets
    if val_users is not None and val_users < len(eligible):
        validated = np.zeros(n_users, dtype=bool)
        validated[np.random.default_rng(0).choice(eligible, size=val_users, replace=False)] = True
    for u in range(n_users):
        seq = item_idx[bounds[u] : bounds[u + 1]]
        if validated[u]:
            train.append(seq[:-2].copy())
            val_target[u], test_target[u] = seq[-2], seq[-1]
        elif has_targets[u]:
            train.append(seq[:-1].copy())  # the validation item trains; the test item stays out
            test_target[u] = seq[-1]
        else:
            train.append(seq.copy())
    stats = dict(data.stats)
    stats["users_train_only"] = int(n_users - len(eligible))
    stats["users_validated"] = int(validated.sum())
    return SequenceSplit(vocab, train, val_target, test_target, stats, data.fingerprint)
