"""train.loss_weighting: 'batch' (per-batch mean) or 'position' (every labelled position alike)."""

import torch
from helpers import tiny_config

from bert4rec.models import SASRec
from bert4rec.training.losses import training_loss
from bert4rec.training.module import SequenceModule


def test_position_weighting_scales_each_batch_by_its_share_of_positions(tiny_prepared):
    cfg = tiny_config(loss_weighting="position").model_copy(update={"model_type": "sasrec"})
    model = SASRec(cfg.model, tiny_prepared.split.n_items).eval()
    module = SequenceModule(model, cfg.train, total_steps=10)
    seq = torch.randint(1, tiny_prepared.split.n_items + 1, (4, 9))
    seq[2:, :6] = 0  # two short windows: 2 labelled positions each instead of 8
    long = {"input_ids": seq[:2, :-1], "labels": seq[:2, 1:], "users": torch.zeros(2, dtype=torch.int64)}
    short = {"input_ids": seq[2:, :-1], "labels": seq[2:, 1:], "users": torch.zeros(2, dtype=torch.int64)}
    short["labels"] = short["labels"].masked_fill(short["input_ids"] == 0, 0)
    n_long, n_short = int((long["labels"] > 0).sum()), int((short["labels"] > 0).sum())
    assert (n_long, n_short) == (16, 4)
    mean_long = training_loss(model, long["input_ids"], long["labels"])
    mean_short = training_loss(model, short["input_ids"], short["labels"])
    # first batch: the running mean is its own count, so the objective is its mean loss
    torch.testing.assert_close(module.training_step(long, 0), mean_long)
    # second: its summed loss over the mean count so far, (16 + 4) / 2 = 10 positions per batch
    torch.testing.assert_close(module.training_step(short, 1), mean_short * n_short / 10)
    # 'batch' (the default) keeps the per-batch mean, whatever the batch holds
    plain = SequenceModule(model, tiny_config().train, total_steps=10)
    torch.testing.assert_close(plain.training_step(short, 0), mean_short)


def test_the_module_trains_with_the_configured_label_smoothing(tiny_prepared):
    cfg = tiny_config(label_smoothing=0.2).model_copy(update={"model_type": "sasrec"})
    model = SASRec(cfg.model, tiny_prepared.split.n_items).eval()
    seq = torch.randint(1, tiny_prepared.split.n_items + 1, (3, 9))
    batch = {"input_ids": seq[:, :-1], "labels": seq[:, 1:], "users": torch.zeros(3, dtype=torch.int64)}
    module = SequenceModule(model, cfg.train, total_steps=10)
    smoothed = training_loss(model, batch["input_ids"], batch["labels"], label_smoothing=0.2)
    torch.testing.assert_close(module.training_step(batch, 0), smoothed)
    assert not torch.allclose(smoothed, training_loss(model, batch["input_ids"], batch["labels"]))
