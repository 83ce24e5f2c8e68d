"""Cloze masking, BERT4Rec's training task.

Random positions of a window are replaced by [MASK] (80%), a random item (10%) or left as is (10%),
and the model predicts the original items there; a share of samples masks only the last item, which
matches the inference task (a [MASK] appended to the history, see `bert4rec.data.collate`).
Masking is a pure function of its inputs and a `torch.Generator`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bert4rec.data.vocab import PAD


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
