"""A training run's progress as a small JSON file, rewritten atomically while it trains, so another
process (the job store behind `POST /jobs`) can show epoch, step, elapsed time and the latest
validation NDCG@10 without talking to the training process."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from bert4rec.io import atomic_write_text
from bert4rec.training.module import VAL_METRIC


class ProgressFile(Callback):
    """Writes `{"stage", "epoch", "max_epochs", "step", "elapsed_s", "val_ndcg@10",
    "best_val_ndcg@10", "updated_at"}` to `path`.

    `epoch` is the 1-based epoch in progress (when training ends: the epochs completed) and
    `val_ndcg@10` the last epoch's validation score (null before the first). Written at most every
    `every_s` seconds during an epoch, at each epoch's start (after the previous epoch's validation,
    which the module logs after the non-monitoring callbacks' epoch-end hooks have run) and when
    training ends. Only global rank 0 writes.
    """

    def __init__(self, path: Path | str, every_s: float = 1.0) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self._start = time.perf_counter()
        self._last_write = -math.inf
        self._best: float | None = None

    def _latest_val(self, trainer: L.Trainer) -> float | None:
        value = trainer.callback_metrics.get(VAL_METRIC)
        if value is None:
            return None
        score = float(value)
        if self._best is None or score > self._best:
            self._best = score
        return round(score, 6)

    def _write(self, trainer: L.Trainer, stage: str, epoch: int) -> None:
        if not trainer.is_global_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "stage": stage,
            "epoch": epoch,
            "max_epochs": trainer.max_epochs,
            "step": trainer.global_step,
            "elapsed_s": round(time.perf_counter() - self._start, 2),
            VAL_METRIC: self._latest_val(trainer),
            f"best_{VAL_METRIC}": None if self._best is None else round(self._best, 6),
            "updated_at": time.time(),
        }
        atomic_write_text(self.path, json.dumps(state) + "\n")
        self._last_write = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self._write(trainer, "training", trainer.current_epoch + 1)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, "training", trainer.current_epoch + 1)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if time.perf_counter() - self._last_write >= self.every_s:
            self._write(trainer, "training", trainer.current_epoch + 1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, "trained", trainer.current_epoch)
