"""Helpers shared by tests (importable as `helpers` thanks to pytest's pythonpath setting)."""

from __future__ import annotations

import os
from pathlib import Path

from bert4rec.config import ExperimentConfig, build_config

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """../shared/data (or $BERT4REC_SHARED_DATA) when present; tests that need it skip otherwise."""
    path = Path(os.environ.get("BERT4REC_SHARED_DATA", REPO.parent / "shared" / "data"))
    return path if path.is_dir() else None


def tiny_config(**train: object) -> ExperimentConfig:
    """Generated data and a tiny model: trains in a couple of seconds on CPU."""
    return build_config(
        "demo",
        {
            "data": {"n_users": 150, "n_items": 60},
            "model": {"max_len": 16, "hidden_size": 16},
            "train": {"epochs": 2, "batch_size": 32, "num_threads": 1, **train},
        },
    )


def next_item_rule_batch(seq, causal: bool, mask_idx: int):  # type: ignore[no-untyped-def]
    """(inputs, labels) teaching "predict the last item": SASRec shifts by one, BERT4Rec masks the
    last position (as at inference)."""
    import torch

    if causal:
        return seq[:, :-1], seq[:, 1:]
    inp = seq.clone()
    inp[:, -1] = mask_idx
    labels = torch.zeros_like(seq)
    labels[:, -1] = seq[:, -1]
    return inp, labels


def assert_predicts_next_item(model, mask_idx: int) -> None:  # type: ignore[no-untyped-def]
    """After learning "item i is followed by i + 1", the history 4..8 must be followed by 9."""
    import torch

    model.eval()
    probe = torch.tensor([[4, 5, 6, 7, 8]])
    if not model.causal:
        probe = torch.cat([probe, torch.tensor([[mask_idx]])], dim=1)
    assert model.predict(probe).argmax().item() == 9, type(model).__name__
