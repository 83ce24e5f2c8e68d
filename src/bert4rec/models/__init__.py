"""Models: the shared Transformer backbone (BERT4Rec, SASRec) and simple baselines."""

from __future__ import annotations

from bert4rec.config import ModelConfig
from bert4rec.models.bert4rec import BERT4Rec
from bert4rec.models.sasrec import SASRec
from bert4rec.models.transformer import SequenceTransformer

TRANSFORMERS: dict[str, type[SequenceTransformer]] = {"bert4rec": BERT4Rec, "sasrec": SASRec}


def build_transformer(
    model_type: str, cfg: ModelConfig, n_items: int, n_users: int = 0
) -> SequenceTransformer:
    """BERT4Rec or SASRec by name."""
    if model_type not in TRANSFORMERS:
        raise ValueError(
            f"not a transformer model type: {model_type!r} (expected one of {sorted(TRANSFORMERS)})"
        )
    return TRANSFORMERS[model_type](cfg, n_items, n_users)


__all__ = ["BERT4Rec", "SASRec", "SequenceTransformer", "TRANSFORMERS", "build_transformer"]
