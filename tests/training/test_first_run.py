"""The first-run levers: the output bias starts at log-popularity (and every scoring path reads it),
and train.min_steps guarantees optimiser steps past a wall-clock budget."""

from __future__ import annotations

import copy
import math
import time
import warnings

import numpy as np
import pytest
import torch
from helpers import tiny_config
from lightning.pytorch.callbacks import Callback, Timer

from bert4rec.evaluation.scoring import TransformerScorer
from bert4rec.models import BERT4Rec, SASRec
from bert4rec.training.fit import fit_transformer, make_train_loader
from bert4rec.training.losses import training_loss


def _counts(n_items: int) -> torch.Tensor:
    counts = torch.arange(n_items + 1, dtype=torch.int64) % 7 * 3  # varied, some items never seen
    counts[0] = 5  # PAD's count is ignored
    return counts


def test_init_output_bias_is_the_smoothed_log_popularity(tiny_prepared):
    cfg = tiny_config()
    n = tiny_prepared.split.n_items
    model = BERT4Rec(cfg.model, n)
    counts = _counts(n)
    model.init_output_bias(counts)
    seen = counts.double().clone()
    seen[0] = 0
    expected = torch.log((seen + 1) / (seen.sum() + n + 1))
    torch.testing.assert_close(model.head_bias.detach().double(), expected, rtol=0, atol=1e-6)
    # the bias orders items by popularity; an item never seen sits at the floor, PAD with it
    assert model.head_bias[0] == model.head_bias[counts[1:].argmin() + 1]
    assert float(model.head_bias.detach().max()) == pytest.approx(
        math.log((seen.max() + 1) / (seen.sum() + n + 1))
    )
    with pytest.raises(ValueError, match="n_items"):
        model.init_output_bias(counts[:-1])
    with pytest.raises(ValueError, match="non-negative"):
        model.init_output_bias(-counts)


@pytest.mark.parametrize("model_cls", [BERT4Rec, SASRec])
def test_scores_and_loss_use_the_initialised_bias(tiny_prepared, model_cls):
    """Same weights, bias zero vs log-popularity: every score moves by exactly that item's bias
    (eager scorer), and the full and sampled losses change."""
    cfg = tiny_config()
    n = tiny_prepared.split.n_items
    torch.manual_seed(0)
    plain = model_cls(cfg.model, n).eval()
    biased = copy.deepcopy(plain)
    biased.init_output_bias(_counts(n))
    histories = [np.array([1, 2, 3]), np.array([4, 5, 6, 7, 8])]
    users = np.arange(2)
    diff = TransformerScorer(biased).score(users, histories) - TransformerScorer(plain).score(
        users, histories
    )
    torch.testing.assert_close(diff[:, 1:], biased.head_bias[1:].detach().expand(2, -1), rtol=0, atol=1e-5)
    seq = torch.tensor([[1, 2, 3, 4]])
    labels = torch.tensor([[0, 0, 5, 6]])
    assert not torch.isclose(training_loss(plain, seq, labels), training_loss(biased, seq, labels))


def test_onnx_export_scores_with_the_initialised_bias(tiny_prepared):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from bert4rec.inference.onnx_backend import export_onnx_bytes

    cfg = tiny_config()
    n = tiny_prepared.split.n_items
    model = SASRec(cfg.model, n).eval()
    model.init_output_bias(_counts(n))
    session = ort.InferenceSession(export_onnx_bytes(model), providers=["CPUExecutionProvider"])
    seq = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    (onnx_scores,) = session.run(None, {"seq": seq.numpy()})
    np.testing.assert_allclose(onnx_scores, model.predict(seq).numpy(), atol=1e-4)
    # an untrained model's item vectors are tiny: its ranking is (nearly) the popularity ranking
    top = np.argsort(-onnx_scores[0, 1:])[:5] + 1
    assert set(_counts(n)[top].tolist()) == {int(_counts(n)[1:].max())}


def test_fit_starts_from_log_popularity_when_asked(tmp_path, tiny_prepared):
    # a learning rate too small to move anything: the returned bias is the initial one
    cfg = tiny_config(epochs=1, lr=1e-12, output_bias_init="log_popularity")
    result = fit_transformer(tiny_prepared.split, cfg, tmp_path, progress=False)
    reference = BERT4Rec(cfg.model, tiny_prepared.split.n_items)
    reference.init_output_bias(torch.from_numpy(tiny_prepared.split.item_popularity()))
    torch.testing.assert_close(result.model.head_bias, reference.head_bias, rtol=0, atol=1e-6)
    zeros = fit_transformer(
        tiny_prepared.split, tiny_config(epochs=1, lr=1e-12), tmp_path / "z", progress=False
    )
    assert float(zeros.model.head_bias.abs().max()) < 1e-6  # the default stays the uniform start


class _Steps(Callback):
    def on_train_end(self, trainer, pl_module):  # type: ignore[no-untyped-def]
        self.steps = trainer.global_step


@pytest.mark.parametrize("min_steps", [None, 7])
def test_min_steps_trains_on_past_the_time_budget(tmp_path, tiny_prepared, min_steps):
    # a budget of ~6 ms: the Timer asks to stop after the first step or two
    cfg = tiny_config(epochs=50, max_minutes=1e-4, min_steps=min_steps)
    per_epoch = len(make_train_loader(tiny_prepared.split, cfg))
    assert per_epoch < 7  # the guarantee must reach into a second epoch
    steps = _Steps()
    result = fit_transformer(tiny_prepared.split, cfg, tmp_path, progress=False, extra_callbacks=[steps])
    if min_steps is None:
        assert 1 <= steps.steps < 7  # the budget ends it (how many steps fit in 6 ms is the machine's)
    else:
        assert steps.steps == min_steps  # the step it is reached at, no more
        assert result.epochs == math.ceil(min_steps / per_epoch)
        assert len(result.history) == result.epochs  # each epoch was validated


class _Budget(Callback):
    def on_train_start(self, trainer, pl_module):  # type: ignore[no-untyped-def]
        timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
        remaining, elapsed = timer.time_remaining("train"), timer.time_elapsed("train")
        assert remaining is not None
        self.timer_seconds = remaining + elapsed  # the Timer's whole budget, through its public API
        self.schedule_seconds = pl_module.budget_seconds


def test_the_time_budget_covers_building_the_starting_weights(tmp_path, tiny_prepared, monkeypatch):
    # train.max_minutes is the whole fit: ALS factors (here a 1.5 s stand-in) come off the loop's share
    from bert4rec.training import fit

    def slow_starting_weights(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(1.5)

    monkeypatch.setattr(fit, "init_starting_weights", slow_starting_weights)
    budget = _Budget()
    cfg = tiny_config(epochs=1, max_minutes=1.0)
    fit_transformer(tiny_prepared.split, cfg, tmp_path, progress=False, extra_callbacks=[budget])
    assert budget.timer_seconds == pytest.approx(budget.schedule_seconds)  # the Timer and the schedule agree
    assert 50.0 < budget.timer_seconds <= 60.0 - 1.5


def test_min_steps_keeps_the_schedule_long_enough(tiny_prepared):
    from bert4rec.config import TrainConfig
    from bert4rec.training.module import SequenceModule

    model = BERT4Rec(tiny_config().model, tiny_prepared.split.n_items)
    module = SequenceModule(
        model, TrainConfig(max_minutes=1.0, epochs=100, min_steps=1000), total_steps=10_000
    )
    module.fit_schedule_to_time_budget(50, steps_done=50, elapsed=10.0)  # 300 steps fit in 60 s
    assert module.total_steps == 1000


def _epochs(history: list[dict]) -> list[int]:  # type: ignore[type-arg]
    return [int(r["epoch"]) for r in history]


def test_val_every_n_epochs_validates_every_nth_and_the_last_epoch(tmp_path, tiny_prepared):
    cfg = tiny_config(epochs=5, val_every_n_epochs=2, patience=50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit_transformer(tiny_prepared.split, cfg, tmp_path, progress=False)
    # an unvalidated first epoch is expected: no "did you call log()?" hint from ModelCheckpoint
    assert not [w for w in caught if "monitored key" in str(w.message)]
    assert result.epochs == 5
    assert _epochs(result.history) == [1, 3, 4]  # epochs 2 and 4 (counted from 1) and the last
    assert all(r["elapsed_s"] > 0 for r in result.history)
    # the kept checkpoint is the best validated epoch
    assert result.best_val_ndcg10 == pytest.approx(max(r["val_ndcg@10"] for r in result.history), abs=1e-5)
    every = fit_transformer(tiny_prepared.split, tiny_config(epochs=3), tmp_path / "every", progress=False)
    assert _epochs(every.history) == [0, 1, 2]  # the default validates every epoch


@pytest.mark.parametrize(("min_steps_over_epoch", "validated"), [(None, [0]), (2, [1])])
def test_val_every_n_epochs_validates_where_the_time_budget_ends(
    tmp_path, tiny_prepared, min_steps_over_epoch, validated
):
    # a ~6 ms budget stops in the first epoch, or (min_steps) a little into the second: that epoch
    # is validated although 5 would not divide it; an epoch before min_steps is not
    cfg = tiny_config(epochs=50, max_minutes=1e-4, val_every_n_epochs=5)
    per_epoch = len(make_train_loader(tiny_prepared.split, cfg))
    if min_steps_over_epoch is not None:
        cfg = tiny_config(
            epochs=50, max_minutes=1e-4, val_every_n_epochs=5, min_steps=per_epoch + min_steps_over_epoch
        )
    result = fit_transformer(tiny_prepared.split, cfg, tmp_path, progress=False)
    assert _epochs(result.history) == validated
    assert result.best_val_ndcg10 == pytest.approx(result.history[-1]["val_ndcg@10"], abs=1e-5)
    assert result.best_checkpoint is not None


@pytest.mark.parametrize("final", [0.0, 0.1, 0.5])
def test_final_lr_ratio_is_where_the_cosine_schedule_ends(tiny_prepared, final):
    from bert4rec.config import TrainConfig
    from bert4rec.training.module import SequenceModule

    model = BERT4Rec(tiny_config().model, tiny_prepared.split.n_items)
    tc = TrainConfig(lr=1e-2, warmup_steps=10, final_lr_ratio=final)
    module = SequenceModule(model, tc, total_steps=110)
    scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(130):
        rates.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    assert max(rates) == pytest.approx(1e-2)  # the peak, after warmup
    assert rates[60] == pytest.approx(1e-2 * (final + (1 - final) / 2))  # half-way down the cosine
    assert rates[110] == pytest.approx(1e-2 * final, abs=1e-12)  # the end, and it stays there
    assert rates[129] == pytest.approx(1e-2 * final, abs=1e-12)
    assert all(a >= b - 1e-15 for a, b in zip(rates[10:], rates[11:], strict=False))  # never rises
    assert TrainConfig().final_lr_ratio == 0.1  # the default keeps the schedule runs were made with


def test_init_item_embeddings_keeps_the_geometry_at_the_random_spread(tiny_prepared):
    cfg = tiny_config()
    n, d = tiny_prepared.split.n_items, cfg.model.hidden_size
    torch.manual_seed(0)
    model = SASRec(cfg.model, n)
    random_spread = float(model.item_emb.weight[1 : n + 1].detach().std())
    mask_row = model.item_emb.weight[n + 1].detach().clone()
    vectors = torch.randn(n + 1, d) * 3.0 + 1.0
    model.init_item_embeddings(vectors)
    rows = model.item_emb.weight[1 : n + 1].detach()
    scale = float(rows.std()) / float(vectors[1:].std())
    assert float(rows.std()) == pytest.approx(random_spread, rel=1e-4)
    torch.testing.assert_close(rows, vectors[1:] * scale, rtol=1e-4, atol=1e-6)
    assert not model.item_emb.weight[0].any()  # PAD stays zero
    assert torch.equal(model.item_emb.weight[n + 1].detach(), mask_row)  # MASK untouched
    with pytest.raises(ValueError, match="shape"):
        model.init_item_embeddings(vectors[:, :-1])
    with pytest.raises(ValueError, match="finite"):
        model.init_item_embeddings(torch.full((n + 1, d), float("nan")))
    with pytest.raises(ValueError, match="all equal"):
        model.init_item_embeddings(torch.ones(n + 1, d))


def test_mf_item_embedding_init_starts_from_the_als_item_factors(tiny_prepared):
    pytest.importorskip("implicit")
    from bert4rec.training.fit import _build_model, mf_item_factors

    cfg = tiny_config(item_embedding_init="mf", seed=3).model_copy(update={"model_type": "sasrec"})
    split = tiny_prepared.split
    model = _build_model(split, cfg, None)
    factors = mf_item_factors(split, cfg)
    assert factors.shape == (split.n_items + 1, cfg.model.hidden_size)
    rows = model.item_emb.weight[1 : split.n_items + 1].detach()
    # a positive multiple of the ALS factors: the same item neighbourhoods
    cosine = torch.nn.functional.cosine_similarity(rows, factors[1:], dim=1)
    assert float(cosine.min()) > 0.999
    # the default keeps the random init
    plain = _build_model(
        split,
        cfg.model_copy(update={"train": cfg.train.model_copy(update={"item_embedding_init": "random"})}),
        None,
    )
    assert not torch.allclose(plain.item_emb.weight[1 : split.n_items + 1], rows)


def test_a_resume_skips_the_starting_weights_the_checkpoint_replaces(tmp_path, tiny_prepared, monkeypatch):
    """train.item_embedding_init=mf fits ALS for a fresh run only: a resume takes the checkpoint's."""
    pytest.importorskip("implicit")
    from bert4rec.training import fit

    cfg = tiny_config(item_embedding_init="mf", epochs=1)
    calls: list[int] = []
    real = fit.mf_item_factors
    monkeypatch.setattr(fit, "mf_item_factors", lambda split, c: calls.append(1) or real(split, c))
    first = fit.fit_transformer(tiny_prepared.split, cfg, tmp_path, progress=False)
    assert calls == [1]
    longer = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 2})})
    resumed = fit.fit_transformer(tiny_prepared.split, longer, tmp_path, resume=True, progress=False)
    assert calls == [1]  # no second ALS fit
    assert [row["epoch"] for row in resumed.history] == [0, 1]
    assert resumed.history[0] == first.history[0]
    # nothing to resume from: a fresh run, which starts from the ALS factors again
    fit.fit_transformer(tiny_prepared.split, cfg, tmp_path / "fresh", resume=True, progress=False)
    assert calls == [1, 1]
