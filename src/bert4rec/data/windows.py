"""Training windows: which slice of each user's sequence becomes a training sample.

BERT4Rec trains on windows of up to `max_len` items; SASRec on windows of `max_len + 1` items (inputs
and next-item labels). A window is (user index, item index array); the collators in
`bert4rec.data.collate` turn a list of them into a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset


def sliding_windows(
    lengths: np.ndarray,
    window: int,
    step: int,
    max_per_user: int | None = None,
    cover_start: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(user, end) pairs covering each sequence with windows of `window` items ending at `end`.

    A sequence of length n <= window gives one window (the whole sequence); longer ones give windows
    ending at n, n - step, ... while the window still holds `window` items, so the most recent part
    is always included and older history is still seen. That leaves out up to `window - 1` of the
    oldest items; `cover_start` adds a window over the first `window` items to train on them too.
    `max_per_user` keeps only each user's most recent windows (1: the last `window` items, as
    RecTools and the Dross-loss paper's code train) and wins over `cover_start`.
    """
    cap = float("inf") if max_per_user is None else max_per_user
    users, ends = [], []
    for u, n in enumerate(lengths):
        if n < 2:
            continue
        user_ends = [int(n)]
        while user_ends[-1] - step >= window and len(user_ends) < cap:
            user_ends.append(user_ends[-1] - step)
        if cover_start and user_ends[-1] > window and len(user_ends) < cap:
            user_ends.append(window)
        users += [u] * len(user_ends)
        ends += user_ends
    return np.asarray(users, dtype=np.int64), np.asarray(ends, dtype=np.int64)


class WindowDataset(Dataset[tuple[int, np.ndarray]]):
    """Training windows over per-user sequences; item i is (user index, item index array)."""

    def __init__(
        self,
        sequences: Sequence[np.ndarray],
        window: int,
        step: int | None = None,
        max_per_user: int | None = None,
        cover_start: bool = False,
    ) -> None:
        self.sequences = sequences
        self.window = window
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        self.users, self.ends = sliding_windows(lengths, window, step or window, max_per_user, cover_start)

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
        u, end = int(self.users[i]), int(self.ends[i])
        return u, self.sequences[u][max(0, end - self.window) : end]

    def lengths(self) -> np.ndarray:
        """Window lengths, for length-bucketed batching."""
        return np.minimum(self.ends, self.window)
