"""Adapts a trained Transformer to the `Scorer` interface: shared by training (validation), evaluation
and serving (the Recommender, the ONNX backend), so none of them imports another's code for it.
`EnsembleScorer` combines several scorers (e.g. one model trained with several seeds) into one."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from bert4rec.data.kinds import sequence_kind
from bert4rec.models.base import Scorer
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


ENSEMBLE_COMBINES = ("prob", "log_prob")


class EnsembleScorer:
    """Scores with several models at once: each member's scores become probabilities (a softmax over
    the real items, columns 1..n_items) and the ensemble scores an item by the log of their mean
    (`combine="prob"`, the default) or by the mean log-probability (`combine="log_prob"`: a product
    of experts). Members trained with a softmax loss agree on scores only up to a constant per
    user; normalising first makes them comparable (and `log_prob` then ranks exactly as the
    members' summed raw scores: for dot-product models, one dot product over their concatenated
    vectors). Column 0 (PAD) scores -inf. On ML-1M SASRec the two were within 0.0010 NDCG@10 of
    each other per ensemble and level on the mean of three (docs/benchmarks/ml-1m-records.md)."""

    def __init__(self, members: Sequence[Scorer], name: str = "ensemble", combine: str = "prob") -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member scorer")
        if combine not in ENSEMBLE_COMBINES:
            raise ValueError(f"combine={combine!r}: choose one of {', '.join(ENSEMBLE_COMBINES)}")
        self.members = list(members)
        self.name = name
        self.combine = combine

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        total: torch.Tensor | None = None
        shape: tuple[int, ...] | None = None
        for member in self.members:
            raw = torch.as_tensor(member.score(users, histories)).float()
            shape = shape or tuple(raw.shape)
            if tuple(raw.shape) != shape:
                raise ValueError(
                    f"ensemble member {getattr(member, 'name', '?')!r} scored shape {tuple(raw.shape)}, "
                    f"the first member {shape}: members must share one item vocabulary"
                )
            log_p = torch.log_softmax(raw[:, 1:], dim=1)
            part = log_p if self.combine == "log_prob" else log_p.exp()
            total = part if total is None else total + part
        assert total is not None
        mean = total / len(self.members)
        if self.combine == "prob":
            mean = mean.log()
        return torch.cat([torch.full((mean.shape[0], 1), -math.inf), mean], dim=1)
