"""Batches: left padding, the training collator of each model type, and the inference input.

The batch builders of BERT4Rec and SASRec (each model type's `bert4rec.data.kinds.SequenceKind`
picks its own; the network is the same backbone):
- BERT4Rec trains on Cloze-masked windows (`bert4rec.data.masking`); at inference a [MASK] is
  appended to the history (which is cut to its last `max_len - 1` items).
- SASRec trains on windows of `max_len + 1` items: input = all but the last, target at each position
  = the next item. At inference the history's last `max_len` items are scored as they are.

Batches are LEFT-padded with 0 to the longest sequence *in the batch*, so short histories are not
padded to `max_len`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bert4rec.data.masking import ClozeConfig, cloze_mask
from bert4rec.data.vocab import PAD


def left_pad(seqs: Sequence[np.ndarray], length: int | None = None) -> torch.Tensor:
    """Left-pad item index arrays with PAD into a (B, L) int64 tensor; longer ones keep their last L."""
    length = length or max((len(s) for s in seqs), default=1) or 1
    out = np.full((len(seqs), length), PAD, dtype=np.int64)
    for i, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[i, length - len(s) :] = s
    return torch.from_numpy(out)


class _SeededCollator:
    """A collator with its own random stream (`torch.Generator`, seeded by train.seed)."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    # a torch.Generator cannot be pickled; its state can (DataLoader workers, ddp_spawn processes)
    def __getstate__(self) -> dict[str, object]:
        state = {k: v for k, v in self.__dict__.items() if k != "generator"}
        return {**state, "generator_state": self.generator.get_state()}

    def __setstate__(self, state: dict[str, object]) -> None:
        generator_state = state.pop("generator_state")
        self.__dict__.update(state)
        self.generator = torch.Generator()
        self.generator.set_state(generator_state)  # type: ignore[arg-type]


class BertCollator(_SeededCollator):
    """Training batches for BERT4Rec: left-pad the windows, then Cloze-mask them."""

    def __init__(self, cfg: ClozeConfig, seed: int = 0) -> None:
        super().__init__(seed)
        self.cfg = cfg

    def __call__(self, batch: Sequence[tuple[int, np.ndarray]]) -> dict[str, torch.Tensor]:
        users = torch.tensor([u for u, _ in batch], dtype=torch.int64)
        seq = left_pad([s for _, s in batch])
        inputs, labels = cloze_mask(seq, self.cfg, self.generator)
        return {"input_ids": inputs, "labels": labels, "users": users}


class NextItemCollator(_SeededCollator):
    """Training batches for SASRec: windows of max_len + 1 items -> inputs [:-1], next-item labels [1:].

    `input_mask_prob` > 0 hides that share of the input items behind [MASK] (index `n_items + 1`,
    BERT4Rec's Cloze noise on the causal model's inputs, as CL4SRec's item-mask augmentation); the
    labels stay the true next items, so every position still trains. Inference never masks.
    """

    def __init__(self, n_items: int = 0, input_mask_prob: float = 0.0, seed: int = 0) -> None:
        if input_mask_prob > 0 and n_items < 1:
            raise ValueError("input masking needs n_items (the [MASK] index is n_items + 1)")
        super().__init__(seed)
        self.mask_idx, self.input_mask_prob = n_items + 1, input_mask_prob

    def __call__(self, batch: Sequence[tuple[int, np.ndarray]]) -> dict[str, torch.Tensor]:
        users = torch.tensor([u for u, _ in batch], dtype=torch.int64)
        seq = left_pad([s for _, s in batch])
        inputs, labels = seq[:, :-1], seq[:, 1:].clone()
        labels[inputs == PAD] = 0  # first real item has no input before it
        if self.input_mask_prob > 0:
            draw = torch.rand(inputs.shape, generator=self.generator)
            hide = (draw < self.input_mask_prob) & (inputs != PAD)
            inputs = inputs.masked_fill(hide, self.mask_idx)
        return {"input_ids": inputs, "labels": labels, "users": users}


def inference_batch(histories: Sequence[np.ndarray], max_len: int, mask_idx: int | None) -> torch.Tensor:
    """(B, L) input for scoring the next item. With `mask_idx` (BERT4Rec) a [MASK] is appended after
    the last `max_len - 1` history items; without it (SASRec) the last `max_len` items are used."""
    if mask_idx is None:
        return left_pad([h[-max_len:] for h in histories])
    return left_pad([np.append(h[-(max_len - 1) :], mask_idx) for h in histories])
