"""Adapts a trained Transformer to the `Scorer` interface used by evaluation and the Recommender."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bert4rec.data.masking import inference_batch
from bert4rec.models.transformer import SequenceTransformer


class TransformerScorer:
    """Scores histories with BERT4Rec ([MASK] appended) or SASRec (last item), in eval mode."""

    def __init__(self, model: SequenceTransformer, name: str | None = None) -> None:
        self.model = model
        self.name = name or type(model).__name__.lower()
        # BERT4Rec predicts at an appended [MASK]; a causal model predicts after its last item
        self.mask_idx = None if model.causal else model.n_items + 1

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            device = next(self.model.parameters()).device
            seq = inference_batch(histories, self.model.cfg.max_len, self.mask_idx).to(device)
            user_t = torch.as_tensor(np.asarray(users), dtype=torch.int64, device=device)
            with torch.inference_mode():
                return self.model.predict(seq, user_t).float().cpu()
        finally:
            self.model.train(was_training)
