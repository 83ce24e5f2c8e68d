import numpy as np
import pytest
import torch
from helpers import tiny_config

from bert4rec.config import TrainConfig
from bert4rec.errors import TrainingDivergedError
from bert4rec.evaluation.evaluator import Evaluator
from bert4rec.models import BERT4Rec
from bert4rec.training.fit import ValidationNDCG, fit_transformer, make_train_loader, validation_users
from bert4rec.training.module import SequenceModule


@pytest.mark.parametrize("model_type", ["bert4rec", "sasrec"])
def test_fit_writes_checkpoints_logs_and_history(tmp_path, tiny_prepared, model_type):
    cfg = tiny_config().model_copy(update={"model_type": model_type})
    result = fit_transformer(tiny_prepared.split, cfg, tmp_path, progress=False)
    assert result.epochs == 2 and len(result.history) == 2
    assert [row["epoch"] for row in result.history] == [0, 1]
    assert all(0.0 <= row["val_ndcg@10"] <= 1.0 and row["elapsed_s"] > 0 for row in result.history)
    # the history is rounded to 5 decimals
    assert result.best_val_ndcg10 == pytest.approx(
        max(row["val_ndcg@10"] for row in result.history), abs=1e-5
    )
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert (tmp_path / "logs" / "metrics.csv").exists()
    assert not result.model.training


def test_resume_continues_from_the_last_checkpoint(tmp_path, tiny_prepared):
    fit_transformer(tiny_prepared.split, tiny_config(epochs=1), tmp_path, progress=False)
    resumed = fit_transformer(
        tiny_prepared.split, tiny_config(epochs=3), tmp_path, resume=True, progress=False
    )
    assert resumed.epochs == 3
    # epoch 0 came from the first run and its log survives the resumed run (epochs 1 and 2)
    assert [row["epoch"] for row in resumed.history] == [0, 1, 2]
    assert (tmp_path / "logs" / "resume-1" / "metrics.csv").exists()


def test_training_is_reproducible_for_a_seed(tmp_path, tiny_prepared):
    a = fit_transformer(tiny_prepared.split, tiny_config(epochs=1), tmp_path / "a", progress=False)
    b = fit_transformer(tiny_prepared.split, tiny_config(epochs=1), tmp_path / "b", progress=False)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)


def test_windows_per_user_trains_on_the_most_recent_window_only(tiny_prepared):
    split = tiny_prepared.split
    all_windows = make_train_loader(split, tiny_config()).dataset
    recent = make_train_loader(split, tiny_config(windows_per_user=1)).dataset
    with_history = [u for u, seq in enumerate(split.train) if len(seq) >= 2]
    assert len(all_windows) > len(recent)  # the generated histories are longer than max_len
    assert sorted(recent.users.tolist()) == with_history
    for i in range(len(recent)):
        u, window = recent[i]
        assert window.tolist() == split.train[u][-recent.window :].tolist()


def test_nan_loss_stops_training_with_an_explanation(tiny_prepared):
    cfg = tiny_config()
    model = BERT4Rec(cfg.model, tiny_prepared.split.n_items)
    module = SequenceModule(model, TrainConfig(lr=10.0), total_steps=10)
    batch = next(iter(make_train_loader(tiny_prepared.split, cfg)))
    with torch.no_grad():
        model.item_emb.weight.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match=r"loss became nan.*lower train.lr"):
        module.training_step(batch, 0)


def test_bert4rec_learns_the_sequential_structure(tmp_path):
    """On generated chains (the demo data), BERT4Rec must clearly beat popularity on validation NDCG@10.

    BERT4Rec first sits on a plateau near popularity until it learns to attend to the neighbouring
    positions; the demo preset's learning rate gets it past that within its epochs."""
    from bert4rec.config import build_config
    from bert4rec.evaluation.evaluator import Evaluator
    from bert4rec.models.baselines import PopularityRecommender
    from bert4rec.pipeline import prepare

    cfg = build_config("demo", {"train": {"epochs": 25, "patience": 25, "num_threads": 2}})
    prepared = prepare(cfg)
    result = fit_transformer(prepared.split, cfg, tmp_path, progress=False)
    pop = PopularityRecommender().fit(prepared.split)
    pop_ndcg = Evaluator(prepared.split, cfg.eval).evaluate_ndcg10(pop, which="val")
    assert result.best_val_ndcg10 > 2 * pop_ndcg + 0.05, (result.best_val_ndcg10, pop_ndcg)
    assert np.isfinite(result.train_seconds)


def test_time_budget_shortens_the_lr_schedule_to_what_fits(tiny_prepared):
    cfg = tiny_config()
    model = BERT4Rec(cfg.model, tiny_prepared.split.n_items)
    module = SequenceModule(model, TrainConfig(max_minutes=1.0, epochs=100), total_steps=10_000)
    module.fit_schedule_to_time_budget(50, steps_done=50, elapsed=10.0)  # 5 steps/s, 60 s budget
    assert module.total_steps == 300
    module.fit_schedule_to_time_budget(
        1000, steps_done=1000, elapsed=1.0
    )  # faster than planned: keep the plan
    assert module.total_steps == 10_000
    module.fit_schedule_to_time_budget(150, steps_done=50, elapsed=10.0)  # resumed after 100 steps
    assert module.total_steps == 400
    no_budget = SequenceModule(model, TrainConfig(epochs=100), total_steps=10_000)
    no_budget.fit_schedule_to_time_budget(50, steps_done=50, elapsed=10.0)
    assert no_budget.total_steps == 10_000


@pytest.mark.parametrize(
    ("bucket_by_length", "loss", "ema_decay"),
    [(True, "full", None), (False, "full", None), (True, "sampled", None), (True, "full", 0.9)],
)
def test_a_resumed_run_trains_exactly_like_an_uninterrupted_one(
    tmp_path, tiny_prepared, monkeypatch, bucket_by_length, loss, ema_decay
):
    """Dropout, the Cloze masks, the batch order and the sampled negatives continue from the
    checkpoint instead of restarting from the seed: stopping after epoch 0 and resuming gives the
    same epochs 1 and 2 as a run that never stopped."""
    import bert4rec.training.fit as fit_module

    cfg = tiny_config(
        epochs=3,
        bucket_by_length=bucket_by_length,
        patience=10,
        loss=loss,
        n_negatives_train=20,
        ema_decay=ema_decay,
    )
    straight = fit_transformer(tiny_prepared.split, cfg, tmp_path / "straight", progress=False)

    class StopAfterFirstEpoch(fit_module.EarlyStopping):
        def on_train_epoch_end(self, trainer, pl_module):
            super().on_train_epoch_end(trainer, pl_module)
            trainer.should_stop = True

    with monkeypatch.context() as patch:
        patch.setattr(fit_module, "EarlyStopping", StopAfterFirstEpoch)
        first = fit_transformer(tiny_prepared.split, cfg, tmp_path / "resumed", progress=False)
    assert first.epochs == 1
    resumed = fit_transformer(tiny_prepared.split, cfg, tmp_path / "resumed", resume=True, progress=False)
    assert [row["epoch"] for row in resumed.history] == [0, 1, 2]
    assert [row["train_loss_epoch"] for row in resumed.history] == pytest.approx(
        [row["train_loss_epoch"] for row in straight.history], rel=1e-5
    )
    assert [row["val_ndcg@10"] for row in resumed.history] == pytest.approx(
        [row["val_ndcg@10"] for row in straight.history], abs=1e-6
    )


def test_ddp_processes_other_than_rank_0_draw_their_own_masks_and_negatives_but_one_shuffle():
    """Every DDP process builds the same collator, shuffle and negative sampler from the seed. The
    callback gives processes above rank 0 their own mask and negative streams (distinct from each
    other and from rank 0's), the same on every start, and leaves the shuffle alone."""
    from types import SimpleNamespace

    from bert4rec.training.fit import _TrainingRandomness

    def process(rank: int, epoch: int = 0, restored: bool = False) -> dict[str, list[int]]:
        gens = {name: torch.Generator().manual_seed(7) for name in ("collator", "shuffle", "negatives")}
        trainer = SimpleNamespace(
            global_rank=rank,
            current_epoch=epoch,
            train_dataloader=SimpleNamespace(
                collate_fn=SimpleNamespace(generator=gens["collator"]),
                sampler=SimpleNamespace(generator=gens["shuffle"]),
            ),
            lightning_module=SimpleNamespace(sampler=SimpleNamespace(generator=gens["negatives"])),
        )
        callback = _TrainingRandomness(seed=7)
        callback._restored = {"torch": torch.get_rng_state()} if restored else None
        callback.on_train_start(trainer, None)
        return {name: torch.randint(0, 10**6, (6,), generator=g).tolist() for name, g in gens.items()}

    ranks = [process(rank) for rank in range(3)]
    assert ranks[0] == {
        name: torch.randint(0, 10**6, (6,), generator=torch.Generator().manual_seed(7)).tolist()
        for name in ("collator", "shuffle", "negatives")
    }  # rank 0 keeps the seed's
    for name in ("collator", "negatives"):
        assert len({tuple(r[name]) for r in ranks}) == 3
    assert all(r["collator"] != r["negatives"] for r in ranks[1:])
    assert len({tuple(r["shuffle"]) for r in ranks}) == 1
    assert process(2) == ranks[2]
    resumed = process(2, epoch=3, restored=True)  # rank > 0 reseeds from (seed, rank, epoch) on resume
    assert resumed["collator"] != ranks[2]["collator"] and resumed["negatives"] != ranks[2]["negatives"]


def test_ema_averages_the_weights_and_is_what_gets_validated_and_returned(tmp_path, tiny_prepared):
    """train.ema_decay: after each step the average moves (1 - decay) of the way to the weights
    (the first step copies them); validation, the best checkpoint and the returned model use it."""
    model = BERT4Rec(tiny_config().model, n_items=20)
    module = SequenceModule(model, TrainConfig(ema_decay=0.9), total_steps=10)
    weight = model.item_emb.weight
    with torch.no_grad():
        weight.fill_(1.0)
        module.on_train_batch_end(None, None, 0)
        weight.fill_(3.0)
        module.on_train_batch_end(None, None, 1)
    assert module.evaluated_model is not model
    torch.testing.assert_close(
        module.evaluated_model.item_emb.weight, torch.full_like(weight, 0.9 * 1 + 0.1 * 3)
    )

    cfg = tiny_config(epochs=2, ema_decay=0.9)
    result = fit_transformer(tiny_prepared.split, cfg, tmp_path / "ema", progress=False)
    state = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    averaged = {k.removeprefix("ema.module."): v for k, v in state.items() if k.startswith("ema.module.")}
    raw = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    assert averaged.keys() == raw.keys() == result.model.state_dict().keys()
    assert not torch.equal(averaged["blocks.0.ffn.fc.weight"], raw["blocks.0.ffn.fc.weight"])
    for name, value in result.model.state_dict().items():
        torch.testing.assert_close(value, averaged[name])
    validate = ValidationNDCG(
        Evaluator(tiny_prepared.split, cfg.eval), validation_users(tiny_prepared.split, None, 0)
    )
    assert validate(result.model) == pytest.approx(result.best_val_ndcg10, abs=1e-6)


def test_resume_works_when_train_ema_decay_was_switched_on_or_off(tmp_path, tiny_prepared):
    plain, ema = tiny_config(epochs=1), tiny_config(epochs=2, ema_decay=0.9)
    fit_transformer(tiny_prepared.split, plain, tmp_path / "on", progress=False)
    switched_on = fit_transformer(tiny_prepared.split, ema, tmp_path / "on", resume=True, progress=False)
    assert [row["epoch"] for row in switched_on.history] == [0, 1]
    fit_transformer(
        tiny_prepared.split, tiny_config(epochs=1, ema_decay=0.9), tmp_path / "off", progress=False
    )
    switched_off = fit_transformer(
        tiny_prepared.split, tiny_config(epochs=2), tmp_path / "off", resume=True, progress=False
    )
    assert [row["epoch"] for row in switched_off.history] == [0, 1]


def _module(**train: object) -> SequenceModule:
    from bert4rec.config import ModelConfig

    model = BERT4Rec(ModelConfig(max_len=8, hidden_size=8, num_heads=1, num_layers=1), n_items=10)
    return SequenceModule(model, TrainConfig(**train), total_steps=1000)


def test_a_diverging_loss_stops_training_with_the_numbers_and_advice():
    from bert4rec.training.module import SETTLE_STEPS

    module = _module(lr=0.05, grad_clip=1.0, warmup_steps=0)
    for step in range(SETTLE_STEPS + 50):
        module.check_loss(torch.tensor(4.0 - 3.5 * min(step, 100) / 100))  # learns down to ~2.2
    with pytest.raises(TrainingDivergedError) as err:
        for _ in range(400):
            module.check_loss(torch.tensor(60.0))  # blows up: the average climbs past 10x its lowest
    message = str(err.value)
    assert "diverged" in message and "x its lowest value" in message and "lower train.lr" in message
    assert "0.017" in message and "grad_clip set (now 1.0)" in message  # lr / 3 suggested


def test_a_noisy_but_stable_loss_does_not_trip_the_guard():
    rng = np.random.default_rng(0)
    module = _module(warmup_steps=0)
    # noisy batches around a slowly falling mean, with single-batch spikes 10x the mean
    for step in range(3000):
        value = 6.0 * np.exp(-step / 800) + 0.3 + rng.uniform(-0.2, 0.2)
        module.check_loss(torch.tensor(value * (10.0 if step % 97 == 0 else 1.0)))


def test_the_guard_waits_for_the_end_of_warm_up():
    from bert4rec.training.module import SETTLE_STEPS

    module = _module(warmup_steps=10_000)  # global_step stays 0 without a Trainer: always warming up
    for value in [1.0] * SETTLE_STEPS + [100.0] * 500:
        module.check_loss(torch.tensor(value))


def test_a_run_that_blows_up_from_the_start_is_stopped(tmp_path, tiny_prepared):
    # lr 3 without clipping: the loss jumps far above a uniform guess's and never comes down
    cfg = tiny_config(lr=3.0, grad_clip=None, warmup_steps=0, epochs=15)
    with pytest.raises(TrainingDivergedError, match=r"diverged.*uniform guess.*set train.grad_clip"):
        fit_transformer(tiny_prepared.split, cfg, tmp_path, progress=False)


@pytest.mark.parametrize(("patience", "epochs_trained"), [(1, 2), (None, 4)])
def test_patience_none_trains_every_epoch(tmp_path, tiny_prepared, monkeypatch, patience, epochs_trained):
    """A validation score that never improves: patience 1 stops after the second epoch, patience
    None (no early stopping) trains all four."""
    monkeypatch.setattr(ValidationNDCG, "__call__", lambda self, model: 0.25)
    cfg = tiny_config(epochs=4, patience=patience)
    result = fit_transformer(tiny_prepared.split, cfg, tmp_path, progress=False)
    assert result.epochs == epochs_trained
    assert [row["epoch"] for row in result.history] == list(range(epochs_trained))
