"""SASRec-style autoregressive model (Kang & McAuley, 2018) on the shared backbone.

Causal attention; every position predicts the next item. Trained here with full cross-entropy over
all items (not the paper's one-negative BCE), which Petrov & Macdonald (2023) showed to be the
stronger setting. At inference the last real item's hidden state is scored.
"""

from __future__ import annotations

import torch

from bert4rec.config import ModelConfig
from bert4rec.models.transformer import SequenceTransformer


class SASRec(SequenceTransformer):
    model_type = "sasrec"

    def __init__(
        self, cfg: ModelConfig, n_items: int, n_users: int = 0, content: torch.Tensor | None = None
    ) -> None:
        super().__init__(cfg, n_items, n_users, causal=True, content=content)
