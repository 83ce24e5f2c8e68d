"""Batch samplers over training windows."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of windows with similar lengths, so a batch is padded to its own longest window
    rather than to `max_len` (most ML-1M histories are far shorter than 200).

    Each epoch: shuffle all windows, cut them into pools of `pool_batches` batches, sort each pool
    by length, cut it into batches and shuffle the order of all batches. The randomness of the
    batches' composition is kept (a window's neighbours change every epoch) while padding waste
    drops to a few percent. Deterministic for a seed; the epoch number advances the stream.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int = 0, pool_batches: int = 50) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.pool = batch_size * pool_batches
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return sum(-(-min(self.pool, len(self.lengths) - s) // self.batch_size) for s in self._pool_starts())

    def _pool_starts(self) -> range:
        return range(0, len(self.lengths), self.pool)

    def set_epoch(self, epoch: int) -> None:
        """Called before each epoch (by `fit._TrainingRandomness`, also after a resume): the order
        depends on the epoch."""
        self.epoch = epoch

    def __iter__(self):  # type: ignore[no-untyped-def]
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        order = rng.permutation(len(self.lengths))
        batches: list[list[int]] = []
        for start in self._pool_starts():
            pool = order[start : start + self.pool]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches.extend(
                pool[i : i + self.batch_size].tolist() for i in range(0, len(pool), self.batch_size)
            )
        for i in rng.permutation(len(batches)):
            yield batches[i]
