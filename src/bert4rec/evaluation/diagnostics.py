"""Built-in troubleshooting: after training, is the sequence model worth it on this data?

Two checks, each returning findings `{"kind", "message", "fix", ...numbers}` that the pipeline logs,
the CLI prints at the end of a run and the results JSON keeps under `diagnostics`:

* `short_histories`: the median training history is under `MIN_MEDIAN_HISTORY` items; a sequence
  model has little order to learn from (the spec's "too few interactions per user").
* `below_baselines`: the model's best validation NDCG@10 does not beat popularity or item-KNN on
  the same split and users; the finding names the likely cause (too few epochs, the learning rate,
  or too-short histories) and its fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MIN_MEDIAN_HISTORY = 5  # the spec: "at least 5-10 interactions per user"
BASELINE_NAMES = ("popularity", "item_knn")


def history_summary(histories: Sequence[np.ndarray]) -> dict[str, Any]:
    """Median, mean, shortest and longest length of the training histories, and their count."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    if len(lengths) == 0:
        return {"users": 0, "median": 0.0, "mean": 0.0, "min": 0, "max": 0}
    return {
        "users": len(lengths),
        "median": float(np.median(lengths)),
        "mean": round(float(lengths.mean()), 2),
        "min": int(lengths.min()),
        "max": int(lengths.max()),
    }


def short_history_finding(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """A `short_histories` finding when the median history is under MIN_MEDIAN_HISTORY items."""
    if summary["users"] == 0 or summary["median"] >= MIN_MEDIAN_HISTORY:
        return None
    return {
        "kind": "short_histories",
        "message": f"the median training history is {summary['median']:g} items (mean {summary['mean']:g}, "
        f"{summary['users']:,} users), under the {MIN_MEDIAN_HISTORY} a sequence model needs to learn "
        "the order of interactions",
        "fix": "compare with item-KNN (--models item_knn), which needs no order, or gather more "
        "interactions per user",
        "median_history": summary["median"],
        "mean_history": summary["mean"],
    }


def _still_rising(history: Sequence[Mapping[str, Any]], metric: str) -> bool:
    """Whether the last epoch's validation score is the best so far (training ended while improving)."""
    scores = [float(row[metric]) for row in history if row.get(metric) is not None]
    return len(scores) >= 1 and scores[-1] >= max(scores) - 1e-12


def baseline_finding(
    model: str,
    model_ndcg: float | None,
    baselines: Mapping[str, float],
    *,
    epochs_trained: int,
    epochs_planned: int,
    lr: float,
    history: Sequence[Mapping[str, Any]] = (),
    summary: Mapping[str, Any] | None = None,
    metric: str = "val_ndcg@10",
) -> dict[str, Any] | None:
    """A `below_baselines` finding when `model_ndcg` (best validation NDCG@10) does not beat every
    baseline in `baselines` ({name: validation NDCG@10}); None when it does. The likely cause, in
    order: too-short histories, training that ended while still improving (too few epochs), else the
    learning rate (a plateau below the baselines)."""
    if model_ndcg is None or not baselines:
        return None
    best_name = max(baselines, key=lambda name: baselines[name])
    best = baselines[best_name]
    if model_ndcg > best:
        return None
    if summary is not None and summary["users"] and summary["median"] < MIN_MEDIAN_HISTORY:
        cause = f"too-short histories (median {summary['median']:g} items)"
        fix = "use item-KNN for this data (--models item_knn), or gather more interactions per user"
    elif _still_rising(history, metric) or epochs_trained < 2:
        cause = (
            f"too few epochs: validation NDCG@10 was still rising after {epochs_trained} of "
            f"{epochs_planned} planned epochs"
        )
        fix = "train longer: raise train.epochs (or train.max_minutes, train.patience)"
    else:
        cause = f"the learning rate ({lr:g}): the model levelled off below the baselines"
        fix = (
            f"try a higher train.lr (e.g. {lr * 3:.2g}; BERT4Rec often sits near popularity before it "
            "learns the order) with train.warmup_steps, or a lower one if the loss was unstable"
        )
    shown = ", ".join(f"{name} {value:.4f}" for name, value in baselines.items())
    return {
        "kind": "below_baselines",
        "message": f"{model} does not beat the baselines on validation NDCG@10: {model_ndcg:.4f} against "
        f"{shown}; likely cause: {cause}",
        "fix": fix,
        "best_baseline": best_name,
    }


def diagnostics(
    model: str,
    model_ndcg: float | None,
    baselines: Mapping[str, float],
    summary: Mapping[str, Any],
    *,
    epochs_trained: int,
    epochs_planned: int,
    lr: float,
    history: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The results JSON's `diagnostics` entry: the validation NDCG@10 of the model and baselines,
    whether the model beats them, the history lengths, and the findings (possibly none)."""
    findings = [
        f
        for f in (
            short_history_finding(summary),
            baseline_finding(
                model,
                model_ndcg,
                baselines,
                epochs_trained=epochs_trained,
                epochs_planned=epochs_planned,
                lr=lr,
                history=history,
                summary=summary,
            ),
        )
        if f is not None
    ]
    beats = None if model_ndcg is None or not baselines else bool(model_ndcg > max(baselines.values()))
    return {
        "val_ndcg@10": {model: model_ndcg, **baselines},
        "beats_baselines": beats,
        "history_length": dict(summary),
        "findings": findings,
    }
