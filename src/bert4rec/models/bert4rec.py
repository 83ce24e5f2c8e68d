"""BERT4Rec (Sun et al., 2019): a bidirectional Transformer trained with the Cloze objective.

The network is the shared backbone with full (non-causal) attention. What makes it BERT4Rec lives
in the data side (`bert4rec.data.kinds.ClozeKind`): random items are replaced by [MASK] during
training, and at inference a [MASK] is appended after the history and its hidden state is scored.
"""

from __future__ import annotations

import torch

from bert4rec.config import ModelConfig
from bert4rec.models.transformer import SequenceTransformer


class BERT4Rec(SequenceTransformer):
    model_type = "bert4rec"

    def __init__(
        self, cfg: ModelConfig, n_items: int, n_users: int = 0, content: torch.Tensor | None = None
    ) -> None:
        super().__init__(cfg, n_items, n_users, causal=False, content=content)
