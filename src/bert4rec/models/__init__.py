"""Models: the shared Transformer backbone (BERT4Rec, SASRec), content fusion and simple baselines.

`TRANSFORMERS` maps every name of `bert4rec.config.TRANSFORMER_TYPES` to its network class (a
Transformer type's data side, its training windows and batches and inference input, is its
`bert4rec.data.kinds.SequenceKind` of the same name); `bert4rec.models.baselines.BASELINES` maps the
names of `BASELINE_TYPES` (kept out of this module's imports: scipy is not needed to serve).
"""

from __future__ import annotations

import torch

from bert4rec.config import TRANSFORMER_TYPES, ModelConfig
from bert4rec.models.bert4rec import BERT4Rec
from bert4rec.models.sasrec import SASRec
from bert4rec.models.transformer import SequenceTransformer

TRANSFORMERS: dict[str, type[SequenceTransformer]] = {cls.model_type: cls for cls in (BERT4Rec, SASRec)}
assert tuple(TRANSFORMERS) == TRANSFORMER_TYPES


def build_transformer(
    model_type: str, cfg: ModelConfig, n_items: int, n_users: int = 0, content: torch.Tensor | None = None
) -> SequenceTransformer:
    """BERT4Rec or SASRec by name. `content`: (n_items + 2, cfg.content_dim) item text vectors for a
    model with `cfg.content_fusion` (None leaves them zero, e.g. before loading saved weights)."""
    if model_type not in TRANSFORMERS:
        raise ValueError(
            f"not a transformer model type: {model_type!r} (expected one of {sorted(TRANSFORMERS)})"
        )
    return TRANSFORMERS[model_type](cfg, n_items, n_users, content=content)


__all__ = ["BERT4Rec", "SASRec", "SequenceTransformer", "TRANSFORMERS", "build_transformer"]
