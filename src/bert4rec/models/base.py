"""The one interface every recommender in this package offers to evaluation and inference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Scorer(Protocol):
    """Scores every item for a batch of users given their input histories.

    `users`: (B,) internal user indices (a model may ignore them; -1 = unknown user).
    `histories`: B arrays of item indices, oldest first (already the evaluation input).
    Returns a float tensor (B, n_items + 1): column j scores item index j; higher is better.
    Column 0 (PAD) is ignored by callers. Seen-item filtering is the caller's job.
    """

    name: str

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor: ...
