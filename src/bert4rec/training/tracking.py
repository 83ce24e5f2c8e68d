"""Experiment tracking through Lightning's loggers, beside the CSV logs that are always written.

`train.logger` picks the tracker: `csv` (only the CSV logs), `mlflow` (a local SQLite store in the
run folder, `sqlite:///<run>/mlflow.db`, no server) or `wandb` (offline; `wandb sync` uploads a run
later). One tracker run per model: the config as parameters, per-epoch metrics from Lightning
(train_loss, val_ndcg@10, elapsed_s), and at the end the test evaluation (full ranking and sampled,
long tail, coverage) as metrics plus the markdown table.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, MLFlowLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from bert4rec.config import TrackerName
from bert4rec.errors import ConfigError

log = logging.getLogger(__name__)

MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
WANDB_DIR = "wandb"


def mlflow_key(name: str) -> str:
    """MLflow metric names allow letters, digits and `_ - . / space`: `ndcg@10` becomes `ndcg_at_10`."""
    return re.sub(r"[^\w\-./ ]", "_", name.replace("@", "_at_"))


class _MLFlowLogger(MLFlowLogger):
    """MLFlowLogger that renames `@` to `_at_` (Lightning would drop it and warn: `ndcg@10` -> `ndcg10`)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({mlflow_key(k): v for k, v in metrics.items()}, step)


def mlflow_uri(root: Path) -> str:
    """The tracking URI of the SQLite store in a run folder."""
    return f"sqlite:///{(Path(root) / MLFLOW_DB).resolve()}"


def make_tracker(
    kind: TrackerName, root: Path, run_name: str, experiment: str | None = None
) -> Logger | None:
    """A Lightning logger for `kind` writing under the run folder `root` (None for `csv`).

    `experiment` (default: the run folder's name) groups the runs of one `compare`; `run_name` is the
    model. Raises ConfigError when the tracker's package is not installed.
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    experiment = experiment or root.name or "bert4rec"
    if kind == "csv":
        return None
    if kind == "mlflow":
        _require("mlflow", "mlflow")
        tracker: Logger = _MLFlowLogger(
            experiment_name=experiment,
            run_name=run_name,
            tracking_uri=mlflow_uri(root),
            artifact_location=(root / MLFLOW_ARTIFACTS).as_uri(),
        )
        log.info("tracking %s in MLflow (mlflow ui --backend-store-uri %s)", run_name, mlflow_uri(root))
        return tracker
    if kind == "wandb":
        _require("wandb", "wandb")
        # offline only: nothing leaves the machine; `wandb sync <run folder>` uploads it later
        os.environ["WANDB_MODE"] = "offline"
        tracker = WandbLogger(
            project=experiment, name=run_name, save_dir=str(root), offline=True, log_model=False
        )
        log.info("tracking %s in wandb (offline) under %s", run_name, root / WANDB_DIR)
        return tracker
    raise ConfigError(f"unknown tracker {kind!r}; choose csv, mlflow or wandb")


def _require(module: str, extra_package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"train.logger={module} needs the {extra_package} package: pip install 'bert4rec[track]'"
        )


def flatten_metrics(record: Mapping[str, Any], prefix: str = "test") -> dict[str, float]:
    """Numbers of a result record as flat metric names: `test/full/ndcg@10`,
    `test/sampled_uniform/hr@10`, `test/long_tail/tail/ndcg@10`, `test/coverage@10`, `train_seconds`."""
    out: dict[str, float] = {}

    def walk(node: Any, name: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key != "protocol":
                    walk(value, f"{name}/{key}")
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            out[name] = float(node)

    walk(record.get("metrics", {}), prefix)
    for key in ("train_seconds", "eval_seconds", "best_val_ndcg@10", "epochs", "n_parameters"):
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


@rank_zero_only
def log_params(tracker: Logger | None, config: Mapping[str, Any], run: Mapping[str, Any]) -> None:
    """Log the run's config (flattened: `model/hidden_size`, ...) and its seed and data fingerprint."""
    if tracker is None:
        return
    extra = {k: run.get(k) for k in ("seed", "data_fingerprint", "config_sha256") if run.get(k) is not None}
    tracker.log_hyperparams({**dict(config), "run": extra})


@rank_zero_only
def log_evaluation(tracker: Logger | None, record: Mapping[str, Any], table: str) -> None:
    """Log the final evaluation (metrics and the markdown table) and close the tracker's run."""
    if tracker is None:
        return
    tracker.log_metrics(flatten_metrics(record))
    if isinstance(tracker, MLFlowLogger):
        tracker.experiment.log_text(tracker.run_id, table, "evaluation.md")
        tracker.finalize("success")
    elif isinstance(tracker, WandbLogger):
        rows = _table_rows(record)
        tracker.log_table("evaluation", columns=["mode", "metric", "value"], data=rows)
        tracker.experiment.summary["evaluation_markdown"] = table
        tracker.experiment.finish()
    else:  # pragma: no cover - only the trackers above are made
        tracker.finalize("success")


def _table_rows(record: Mapping[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for mode, values in record.get("metrics", {}).items():
        if mode in ("full", "sampled_uniform", "sampled_popularity") and isinstance(values, Mapping):
            rows += [[mode, metric, float(v)] for metric, v in values.items()]
    return rows
