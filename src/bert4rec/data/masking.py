"""Training samples and batches: sliding windows, Cloze masking, and train/infer collation.

This is where BERT4Rec differs from SASRec (the network is the same backbone):
- BERT4Rec trains on windows of up to `max_len` items with random positions replaced by [MASK]
  (80%), a random item (10%) or left as is (10%), and predicts the original items there; a share of
  samples masks only the last item, which matches the inference task. At inference a [MASK] is
  appended to the history (which is cut to its last `max_len - 1` items).
- SASRec trains on windows of `max_len + 1` items: input = all but the last, target at each position
  = the next item. At inference the history's last `max_len` items are scored as they are.

Batches are LEFT-padded with 0 to the longest sequence *in the batch*, so short histories are not
padded to `max_len`. Masking is a pure function of its inputs and a `torch.Generator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from bert4rec.data.vocab import PAD


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


def left_pad(seqs: Sequence[np.ndarray], length: int | None = None) -> torch.Tensor:
    """Left-pad item index arrays with PAD into a (B, L) int64 tensor; longer ones keep their last L."""
    length = length or max((len(s) for s in seqs), default=1) or 1
    out = np.full((len(seqs), length), PAD, dtype=np.int64)
    for i, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[i, length - len(s) :] = s
    return torch.from_numpy(out)


@dataclass(frozen=True)
class ClozeConfig:
    n_items: int
    mask_prob: float = 0.2
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1
    last_item_mask_prob: float = 0.1

    @property
    def mask_idx(self) -> int:
        return self.n_items + 1


def cloze_mask(
    seq: torch.Tensor, cfg: ClozeConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cloze masking of a left-padded (B, L) batch. Returns (inputs, labels); labels are 0 where
    nothing is predicted. Every non-empty row gets at least one masked position."""
    real = seq != PAD
    draw = torch.rand(seq.shape, generator=generator)
    masked = (draw < cfg.mask_prob) & real
    # rows chosen for "last item only": exactly the final position is masked (always a real item)
    last_only = torch.rand(seq.size(0), generator=generator) < cfg.last_item_mask_prob
    masked[last_only] = False
    masked[last_only, -1] = real[last_only, -1]
    # guarantee one target per row: mask the last item where nothing was drawn
    empty = ~masked.any(dim=1) & real[:, -1]
    masked[empty, -1] = True
    labels = torch.where(masked, seq, torch.zeros_like(seq))
    # 80/10/10 replacement (configurable); "last only" rows always get [MASK], as at inference
    how = torch.rand(seq.shape, generator=generator)
    to_mask = masked & ((how < cfg.mask_token_prob) | last_only[:, None])
    to_random = masked & ~to_mask & (how < cfg.mask_token_prob + cfg.random_token_prob)
    inputs = seq.clone()
    inputs[to_mask] = cfg.mask_idx
    if to_random.any():
        inputs[to_random] = torch.randint(1, cfg.n_items + 1, (int(to_random.sum()),), generator=generator)
    return inputs, labels


class BertCollator:
    """Training batches for BERT4Rec: left-pad the windows, then Cloze-mask them."""

    def __init__(self, cfg: ClozeConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.generator = torch.Generator().manual_seed(seed)

    # a torch.Generator cannot be pickled; its state can (DataLoader workers, ddp_spawn processes)
    def __getstate__(self) -> dict[str, object]:
        return {"cfg": self.cfg, "generator_state": self.generator.get_state()}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.cfg = state["cfg"]  # type: ignore[assignment]
        self.generator = torch.Generator()
        self.generator.set_state(state["generator_state"])  # type: ignore[arg-type]

    def __call__(self, batch: Sequence[tuple[int, np.ndarray]]) -> dict[str, torch.Tensor]:
        users = torch.tensor([u for u, _ in batch], dtype=torch.int64)
        seq = left_pad([s for _, s in batch])
        inputs, labels = cloze_mask(seq, self.cfg, self.generator)
        return {"input_ids": inputs, "labels": labels, "users": users}


class NextItemCollator:
    """Training batches for SASRec: windows of max_len + 1 items -> inputs [:-1], next-item labels [1:]."""

    def __call__(self, batch: Sequence[tuple[int, np.ndarray]]) -> dict[str, torch.Tensor]:
        users = torch.tensor([u for u, _ in batch], dtype=torch.int64)
        seq = left_pad([s for _, s in batch])
        inputs, labels = seq[:, :-1], seq[:, 1:].clone()
        labels[inputs == PAD] = 0  # first real item has no input before it
        return {"input_ids": inputs, "labels": labels, "users": users}


def inference_batch(histories: Sequence[np.ndarray], max_len: int, mask_idx: int | None) -> torch.Tensor:
    """(B, L) input for scoring the next item. With `mask_idx` (BERT4Rec) a [MASK] is appended after
    the last `max_len - 1` history items; without it (SASRec) the last `max_len` items are used."""
    if mask_idx is None:
        return left_pad([h[-max_len:] for h in histories])
    return left_pad([np.append(h[-(max_len - 1) :], mask_idx) for h in histories])
