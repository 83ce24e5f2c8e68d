"""Models: the shared Transformer backbone (BERT4Rec, SASRec), content fusion and simple baselines.

The registries below map every name of `bert4rec.config.MODEL_TYPES` to its class (a Transformer
type's data side, its training windows and batches and inference input, is its
`bert4rec.data.kinds.SequenceKind` of the same name).
"""

from __future__ import annotations

import torch

from bert4rec.config import BASELINE_TYPES, TRANSFORMER_TYPES, BaselinesConfig, ModelConfig
from bert4rec.models.baselines import ItemKNNRecommender, MFRecommender, PopularityRecommender
from bert4rec.models.bert4rec import BERT4Rec
from bert4rec.models.sasrec import SASRec
from bert4rec.models.transformer import SequenceTransformer

TRANSFORMERS: dict[str, type[SequenceTransformer]] = {cls.model_type: cls for cls in (BERT4Rec, SASRec)}
Baseline = PopularityRecommender | ItemKNNRecommender | MFRecommender
BASELINES: dict[str, type[Baseline]] = {
    cls.name: cls for cls in (PopularityRecommender, ItemKNNRecommender, MFRecommender)
}
assert tuple(TRANSFORMERS) == TRANSFORMER_TYPES and tuple(BASELINES) == BASELINE_TYPES


def build_baseline(model_type: str, settings: BaselinesConfig | None = None) -> Baseline:
    """An unfitted baseline by name, with its `baselines.<name>` settings (popularity has none)."""
    if model_type not in BASELINES:
        raise ValueError(f"not a baseline model type: {model_type!r} (expected one of {sorted(BASELINES)})")
    own = getattr(settings or BaselinesConfig(), model_type, None)
    return BASELINES[model_type](**own.model_dump()) if own is not None else BASELINES[model_type]()


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


__all__ = [
    "BASELINES",
    "BERT4Rec",
    "Baseline",
    "SASRec",
    "SequenceTransformer",
    "TRANSFORMERS",
    "build_baseline",
    "build_transformer",
]
