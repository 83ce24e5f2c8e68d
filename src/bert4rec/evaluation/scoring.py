"""Adapts a trained Transformer to the `Scorer` interface: shared by training (validation), evaluation
and serving (the Recommender, the ONNX backend), so none of them imports another's code for it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bert4rec.data.kinds import sequence_kind
from bert4rec.models.transformer import SequenceTransformer


class TransformerScorer:
    """Scores histories with a Transformer in eval mode, fed as its kind says (BERT4Rec: [MASK]
    appended; SASRec: the history as it is), in chunks of similar history length."""

    def __init__(self, model: SequenceTransformer, name: str | None = None, chunk_size: int = 128) -> None:
        self.model = model
        self.kind = sequence_kind(model.model_type)
        self.name = name or model.model_type
        self.chunk_size = chunk_size

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """(len(histories), n_items + 1) float32 scores; column j scores item index j."""
        model = self.model
        was_training = model.training
        model.eval()
        try:
            user_t = torch.as_tensor(np.asarray(users), dtype=torch.int64)
            out = torch.empty(len(histories), model.n_items + 1)
            chunks = self.kind.inference_chunks(histories, model.cfg.max_len, model.n_items, self.chunk_size)
            with torch.inference_mode():
                for idx, seq in chunks:
                    rows = torch.from_numpy(idx)
                    out[rows] = self._scores(seq, user_t[rows])
            return out
        finally:
            model.train(was_training)

    def _scores(self, seq: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """(b, L) inputs and (b,) user indices -> (b, n_items + 1) float32 scores on the CPU."""
        device = next(self.model.parameters()).device
        return self.model.predict(seq.to(device), users.to(device)).float().cpu()
