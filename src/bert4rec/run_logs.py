"""Reading a run's per-epoch logs (the CSV files Lightning's CSVLogger writes under `<run>/<model>/logs`).

Training returns them in its result and the report plots them; neither side owns the format, so the
reader lives here and imports neither `training/` (Lightning) nor the report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl

VAL_METRIC = "val_ndcg@10"  # the per-epoch validation column (`training.module` logs it)


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
