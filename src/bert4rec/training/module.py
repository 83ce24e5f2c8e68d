"""LightningModule for the Transformer models: loss, optimiser, schedule, per-epoch validation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from bert4rec.config import TrainConfig
from bert4rec.errors import TrainingDivergedError
from bert4rec.models.transformer import SequenceTransformer
from bert4rec.training.losses import training_loss
from bert4rec.training.sampled_softmax import NegativeSampler

VAL_METRIC = "val_ndcg@10"
# Divergence guard: after warm-up, the training loss smoothed over batches (exponential moving
# average, weight LOSS_SMOOTHING per batch) must not climb DIVERGENCE_FACTOR times above its lowest
# value, nor above a uniform guess's cross-entropy ln(n_items + 1) (a run can blow up before it ever
# learns); SETTLE_STEPS batches first let the average settle
LOSS_SMOOTHING = 0.05
DIVERGENCE_FACTOR = 10.0
SETTLE_STEPS = 20


class SequenceModule(L.LightningModule):
    """Trains BERT4Rec or SASRec (the batch's labels say which positions to predict).

    Validation is one full-ranking NDCG@10 over the validation users, computed at the end of each
    training epoch by `validate` (the shared Evaluator) and logged as `val_ndcg@10`, which early
    stopping and checkpointing monitor. With a `sampler` (train.loss='sampled') each training batch
    draws its shared negatives from it and trains with the sampled softmax; without, full softmax.
    """

    def __init__(
        self,
        model: SequenceTransformer,
        cfg: TrainConfig,
        total_steps: int,
        validate: Callable[[SequenceTransformer], float] | None = None,
        sampler: NegativeSampler | None = None,
        budget_seconds: float | None = None,
    ) -> None:
        super().__init__()
        self.model, self.cfg, self.total_steps, self.validate = model, cfg, max(total_steps, 1), validate
        # the training loop's share of train.max_minutes (fit_transformer deducts the starting weights)
        self.budget_seconds = budget_seconds if budget_seconds is not None else (cfg.max_minutes or 0) * 60
        self.sampler = sampler
        self._planned_steps = self.total_steps
        self._positions_seen, self._batches_seen = 0, 0  # for train.loss_weighting='position'
        self._ema_loss, self._lowest_loss, self._loss_steps = 0.0, math.inf, 0  # see check_loss
        # train.ema_decay: torch's AveragedModel keeps the moving average; as a submodule it is saved
        # in (and resumed from) every checkpoint, and the optimiser never sees it
        self.ema: AveragedModel | None = None
        if cfg.ema_decay is not None:
            self.ema = AveragedModel(
                model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True
            )
            self.ema.requires_grad_(False)

    @property
    def evaluated_model(self) -> SequenceTransformer:
        """The weights validated and kept: the moving average with train.ema_decay, else the model."""
        return self.model if self.ema is None else self.ema.module  # type: ignore[return-value]

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """--resume across a change of train.ema_decay: a checkpoint without an average starts one
        from its weights (as the first step would); an average nobody asked for is dropped."""
        state = checkpoint["state_dict"]
        if self.ema is not None and "ema.n_averaged" not in state:
            state.update(
                {f"ema.module.{k[len('model.') :]}": v for k, v in state.items() if k.startswith("model.")}
            )
            state["ema.n_averaged"] = torch.tensor(1, dtype=torch.long)
        elif self.ema is None:
            for key in [k for k in state if k.startswith("ema.")]:
                del state[key]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        users = batch["users"] if self.model.user_emb is not None else None
        negatives = self.sampler.sample(self.device) if self.sampler is not None else None
        loss = training_loss(
            self.model, batch["input_ids"], batch["labels"], users, negatives, self.cfg.label_smoothing
        )
        objective = self._weighted(loss, batch["labels"])
        self.check_loss(loss)
        self.log(
            "train_loss",
            loss,
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=batch["input_ids"].size(0),
            sync_dist=self._distributed,  # DDP: the mean over all processes, not rank 0's
        )
        return objective

    def check_loss(self, loss: torch.Tensor) -> None:
        """Stop training (TrainingDivergedError, with advice) when the loss is NaN / infinite, or when
        it diverges: after warm-up its smoothed value climbs DIVERGENCE_FACTOR times above the lowest
        smoothed value seen so far."""
        value = float(loss.detach())  # one device sync per step, as the NaN check always needed
        where = f"at epoch {self.current_epoch}, step {self.global_step}"
        clip = (
            "set train.grad_clip (e.g. 1.0; it is off)"
            if self.cfg.grad_clip is None
            else f"keep train.grad_clip set (now {self.cfg.grad_clip})"
        )
        advice = (
            f"The learning rate ({self.cfg.lr}) is probably too high for this model/data: lower train.lr "
            f"(e.g. to {self.cfg.lr / 3:.2g}), {clip}, or add train.warmup_steps."
        )
        if not math.isfinite(value):
            raise TrainingDivergedError(f"training loss became {value} {where}. {advice}")
        # bias-corrected moving average (as Adam's): the first batches weigh alike, so one odd first
        # batch does not dominate the average for long
        self._ema_loss += LOSS_SMOOTHING * (value - self._ema_loss)
        self._loss_steps += 1
        smoothed = self._ema_loss / (1.0 - (1.0 - LOSS_SMOOTHING) ** self._loss_steps)
        if self._loss_steps < SETTLE_STEPS or self.global_step < self.cfg.warmup_steps:
            return
        self._lowest_loss = min(self._lowest_loss, smoothed)
        guess = math.log(self.model.n_items + 1)  # cross-entropy of a uniform guess over the items
        reference, what = (
            (self._lowest_loss, "its lowest value")
            if self._lowest_loss < guess
            else (guess, "a uniform guess's (ln of the item count)")
        )
        if smoothed > DIVERGENCE_FACTOR * reference:
            raise TrainingDivergedError(
                f"training loss diverged {where}: its running average {smoothed:.4g} is "
                f"{smoothed / reference:.0f}x {what} {reference:.4g} "
                f"(the guard stops at {DIVERGENCE_FACTOR:g}x). {advice}"
            )

    def _weighted(self, loss: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The objective to minimise from the batch's mean loss over its labelled positions
        (labels > 0; train.loss_weighting). 'position': the summed loss over the running mean of
        positions per batch, so the step size per position does not depend on how many other
        positions share the batch (length buckets put short windows together); the logged
        train_loss stays the per-position mean."""
        if self.cfg.loss_weighting == "batch":
            return loss
        n_positions = int((labels > 0).sum())  # counted only here: on a GPU it waits for the batch
        self._positions_seen += n_positions
        self._batches_seen += 1
        return loss * (n_positions * self._batches_seen / self._positions_seen)

    @property
    def _distributed(self) -> bool:
        """True under DDP (also False when the module is used without a Trainer, as in unit tests)."""
        return self._trainer is not None and self.trainer.world_size > 1

    def on_train_start(self) -> None:
        self._fit_start = time.perf_counter()
        self._start_step = self.global_step  # > 0 after a resume

    def on_train_epoch_end(self) -> None:
        elapsed = time.perf_counter() - self._fit_start
        if self._distributed:
            # DDP: every process must fit the same LR schedule (its gradients are averaged with the
            # others'), so all use the slowest process's clock
            clock = torch.tensor(elapsed, dtype=torch.float64, device=self.device)
            elapsed = float(self.trainer.strategy.reduce(clock, reduce_op="max"))
        self.log("elapsed_s", elapsed)
        self.fit_schedule_to_time_budget(self.global_step, self.global_step - self._start_step, elapsed)
        # runs before the monitoring callbacks (EarlyStopping, ModelCheckpoint) of this epoch
        if self.validate is not None and self.validates_after_this_epoch():
            self.log(VAL_METRIC, self.validate(self.evaluated_model), prog_bar=True, sync_dist=True)

    def validates_after_this_epoch(self) -> bool:
        """train.val_every_n_epochs: every N-th epoch, and the last one: the final epoch of
        `epochs`, or an epoch after which training stops on request (the time budget's Timer stops
        mid-epoch and sets `should_stop` before this hook, under DDP broadcast so that every
        process decides alike; before train.min_steps Lightning goes on, so no validation then).
        Without validation Lightning still holds the last logged value: EarlyStopping counts such
        an epoch as one without improvement (patience stays in epochs) and ModelCheckpoint never
        takes it for a new best (it is not strictly better)."""
        every = self.cfg.val_every_n_epochs
        epochs_done = self.current_epoch + 1
        if every <= 1 or epochs_done % every == 0:
            return True
        trainer = self.trainer
        if trainer.max_epochs is not None and epochs_done >= trainer.max_epochs:
            return True
        return bool(trainer.should_stop) and self.global_step >= (self.cfg.min_steps or 0)

    def fit_schedule_to_time_budget(self, global_step: int, steps_done: int, elapsed: float) -> None:
        """With a wall-clock budget (train.max_minutes) the run stops long before `epochs` would end,
        so the cosine decay would never happen: after each epoch, shrink the schedule's length to
        the number of steps expected to fit in the budget at the speed measured so far.
        `steps_done` steps were trained in `elapsed` seconds by this run (of `global_step` in all)."""
        if not self.cfg.max_minutes or steps_done <= 0 or elapsed <= 0:
            return
        # validation time is part of an epoch's cost, so it is included in the measured rate
        # (steps before a resume) + (steps this run can do in the budget at the measured rate)
        steps_in_budget = global_step - steps_done + int(steps_done * self.budget_seconds / elapsed)
        # train.min_steps trains on past the budget: the schedule then decays over those steps
        steps_in_budget = max(steps_in_budget, self.cfg.min_steps or 0)
        self.total_steps = max(1, min(self._planned_steps, steps_in_budget))

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            # no weight decay on biases, LayerNorms and embeddings (standard AdamW practice)
            (no_decay if p.ndim < 2 or "emb" in name else decay).append(p)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.cfg.lr,
        )
        warmup = min(self.cfg.warmup_steps, self.total_steps // 2)
        final = self.cfg.final_lr_ratio

        def lr_lambda(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            # reads self.total_steps at every step: a time budget may shorten it during training
            progress = (step - warmup) / max(1, self.total_steps - warmup)
            cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))  # 1 -> 0
            return final + (1.0 - final) * cosine  # peak -> train.final_lr_ratio of it

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
