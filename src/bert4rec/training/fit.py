"""Train BERT4Rec / SASRec with PyTorch Lightning: checkpoints, early stopping, CSV logs, resume."""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import polars as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar, Timer
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from bert4rec.config import ExperimentConfig
from bert4rec.data.masking import (
    BertCollator,
    ClozeConfig,
    LengthBucketSampler,
    NextItemCollator,
    WindowDataset,
)
from bert4rec.data.sequences import SequenceSplit
from bert4rec.evaluation.evaluator import Evaluator
from bert4rec.inference.scoring import TransformerScorer
from bert4rec.models import build_transformer
from bert4rec.models.transformer import SequenceTransformer
from bert4rec.training.module import VAL_METRIC, SequenceModule

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    model: SequenceTransformer
    train_seconds: float
    epochs: int
    best_val_ndcg10: float | None
    history: list[dict[str, Any]] = field(default_factory=list)  # per epoch: epoch, elapsed_s, val_ndcg@10
    best_checkpoint: str | None = None


def make_train_loader(split: SequenceSplit, cfg: ExperimentConfig) -> DataLoader:
    """Windows over the training sequences with the model's collator (Cloze masking or next item)."""
    bert = cfg.model_type == "bert4rec"
    window = cfg.model.max_len if bert else cfg.model.max_len + 1
    dataset = WindowDataset(split.train, window, cfg.train.window_step)
    if len(dataset) == 0:
        from bert4rec.errors import DataError

        raise DataError("no training sequences with at least 2 items; the data set is too small to train on")
    collate = (
        BertCollator(
            ClozeConfig(
                split.n_items,
                cfg.train.mask_prob,
                cfg.train.mask_token_prob,
                cfg.train.random_token_prob,
                cfg.train.last_item_mask_prob,
            ),
            seed=cfg.train.seed,
        )
        if bert
        else NextItemCollator()
    )
    if cfg.train.bucket_by_length:
        sampler = LengthBucketSampler(dataset.lengths(), cfg.train.batch_size, seed=cfg.train.seed)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
    generator = torch.Generator().manual_seed(cfg.train.seed)
    return DataLoader(
        dataset, batch_size=cfg.train.batch_size, shuffle=True, collate_fn=collate, generator=generator
    )


def validation_users(split: SequenceSplit, limit: int | None, seed: int) -> np.ndarray:
    users = split.users("val")
    if limit is not None and limit < len(users):
        users = np.sort(np.random.default_rng(seed).choice(users, size=limit, replace=False))
    return users


def fit_transformer(
    split: SequenceSplit,
    cfg: ExperimentConfig,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
) -> FitResult:
    """Train `cfg.model_type` on `split.train`, early-stopping on validation NDCG@10 (full ranking).

    Checkpoints go to `run_dir/checkpoints` (best and last); metrics per epoch to `run_dir/logs`.
    With `resume=True` training continues from `checkpoints/last.ckpt` if it exists. The returned
    model holds the best validation weights.
    """
    tc = cfg.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    L.seed_everything(tc.seed, workers=True, verbose=False)
    model = build_transformer(cfg.model_type, cfg.model, split.n_items, split.vocab.n_users)
    loader = make_train_loader(split, cfg)
    evaluator = Evaluator(split, cfg.eval)
    val_users = validation_users(split, tc.limit_val_users, tc.seed)

    def validate(m: SequenceTransformer) -> float:
        return evaluator.evaluate_ndcg10(TransformerScorer(m), which="val", users=val_users)

    module = SequenceModule(model, tc, total_steps=tc.epochs * len(loader), validate=validate)
    ckpt_dir = Path(run_dir) / "checkpoints"
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor=VAL_METRIC,
        mode="max",
        save_top_k=1,
        save_last=True,
        save_on_train_epoch_end=True,
    )
    callbacks: list[Any] = [
        checkpoint,
        EarlyStopping(monitor=VAL_METRIC, mode="max", patience=tc.patience, check_on_train_epoch_end=True),
    ]
    if tc.max_minutes:
        callbacks.append(Timer(duration=timedelta(minutes=tc.max_minutes), interval="step"))
    if progress:
        callbacks.append(RichProgressBar(leave=True))
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if resume and last.exists() else None
    if resume and ckpt_path is None:
        log.info("no checkpoint at %s; starting from scratch", last)
    logger = CSVLogger(str(run_dir), name="logs", version=_log_version(Path(run_dir) / "logs", ckpt_path))
    trainer = L.Trainer(
        max_epochs=tc.epochs,
        accelerator=tc.accelerator,
        devices=tc.devices,
        strategy=tc.strategy,
        gradient_clip_val=tc.grad_clip,
        logger=logger,
        callbacks=callbacks,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=max(1, min(50, len(loader))),
        default_root_dir=str(run_dir),
    )
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path)
    train_seconds = time.perf_counter() - start

    best_path = checkpoint.best_model_path
    if best_path and Path(best_path).exists():
        # our own checkpoint, written by this process; it holds Lightning's loop state objects
        state = torch.load(best_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    best = checkpoint.best_model_score
    return FitResult(
        model=model.cpu().eval(),
        train_seconds=train_seconds,
        epochs=trainer.current_epoch,
        best_val_ndcg10=float(best) if best is not None else None,
        history=read_history(Path(run_dir) / "logs"),
        best_checkpoint=best_path or None,
    )


def _log_version(logs_dir: Path, ckpt_path: str | None) -> str:
    """CSV log folder below `logs_dir`: the folder itself for a fresh run, `resume-N` for the N-th
    resumed run (Lightning's CSV logger deletes an existing metrics.csv, which would lose the
    epochs trained before the interrupt). A fresh run clears the logs of earlier resumed runs."""
    resumed = sorted(logs_dir.glob("resume-*"), key=lambda p: int(p.name.split("-")[1]))
    if ckpt_path is None:
        for folder in resumed:
            shutil.rmtree(folder)
        return ""
    return f"resume-{len(resumed) + 1}"


def read_history(logs_dir: Path) -> list[dict[str, Any]]:
    """Per-epoch rows (epoch, elapsed_s, val_ndcg@10, train_loss_epoch) from the CSV logger's files:
    `logs_dir/metrics.csv` then `logs_dir/resume-N/metrics.csv`; a later file wins for an epoch."""
    files = [logs_dir / "metrics.csv"] + [
        p / "metrics.csv" for p in sorted(logs_dir.glob("resume-*"), key=lambda p: int(p.name.split("-")[1]))
    ]
    rows_by_epoch: dict[int, dict[str, Any]] = {}
    for file in files:
        for row in _read_metrics(file):
            rows_by_epoch[int(row["epoch"])] = row
    return [rows_by_epoch[e] for e in sorted(rows_by_epoch)]


def _read_metrics(metrics_csv: Path) -> list[dict[str, Any]]:
    if not metrics_csv.exists():
        return []
    frame = pl.read_csv(metrics_csv)
    if VAL_METRIC not in frame.columns:
        return []
    cols = [c for c in ("epoch", "elapsed_s", VAL_METRIC, "train_loss_epoch") if c in frame.columns]
    rows = frame.filter(pl.col(VAL_METRIC).is_not_null()).select(cols)
    if "train_loss_epoch" in frame.columns:
        losses = frame.filter(pl.col("train_loss_epoch").is_not_null()).select("epoch", "train_loss_epoch")
        rows = rows.drop("train_loss_epoch").join(losses, on="epoch", how="left")
    return [
        {k: (round(v, 5) if isinstance(v, float) and not math.isnan(v) else v) for k, v in r.items()}
        for r in rows.to_dicts()
    ]
