"""Adapts a trained Transformer to the `Scorer` interface used by evaluation and the Recommender."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bert4rec.data.collate import inference_batch
from bert4rec.models.transformer import SequenceTransformer


class TransformerScorer:
    """Scores histories with BERT4Rec ([MASK] appended) or SASRec (last item), in eval mode."""

    def __init__(self, model: SequenceTransformer, name: str | None = None, chunk_size: int = 128) -> None:
        self.model = model
        self.name = name or type(model).__name__.lower()
        self.chunk_size = chunk_size
        # BERT4Rec predicts at an appended [MASK]; a causal model predicts after its last item
        self.mask_idx = None if model.causal else model.n_items + 1

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            device = next(self.model.parameters()).device
            user_t = torch.as_tensor(np.asarray(users), dtype=torch.int64, device=device)
            # score in chunks of similar history length: each chunk is padded only to its own longest
            # history instead of max_len (the same trick as the length-bucketed training batches)
            lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
            order = np.argsort(lengths, kind="stable")
            out = torch.empty(len(histories), self.model.n_items + 1)
            with torch.inference_mode():
                for start in range(0, len(order), self.chunk_size):
                    idx = order[start : start + self.chunk_size]
                    seq = inference_batch([histories[i] for i in idx], self.model.cfg.max_len, self.mask_idx)
                    rows = torch.from_numpy(idx)
                    out[rows] = self.model.predict(seq.to(device), user_t[rows.to(device)]).float().cpu()
            return out
        finally:
            self.model.train(was_training)
