"""Built-in troubleshooting: short histories and a model that does not beat the baselines."""

from __future__ import annotations

import numpy as np
import pytest

from bert4rec.evaluation.diagnostics import (
    baseline_finding,
    diagnostics,
    history_summary,
    short_history_finding,
)

LONG = history_summary([np.arange(n) for n in (8, 12, 20, 30)])
SHORT = history_summary([np.arange(n) for n in (2, 3, 3, 4, 9)])
RISING = [{"epoch": 0, "val_ndcg@10": 0.01}, {"epoch": 1, "val_ndcg@10": 0.02}]
FLAT = [
    {"epoch": 0, "val_ndcg@10": 0.03},
    {"epoch": 1, "val_ndcg@10": 0.05},
    {"epoch": 2, "val_ndcg@10": 0.04},
]
BASELINES = {"popularity": 0.03, "item_knn": 0.06}


def test_history_summary_and_the_short_history_warning_names_the_numbers():
    assert SHORT == {"users": 5, "median": 3.0, "mean": 4.2, "min": 2, "max": 9}
    finding = short_history_finding(SHORT)
    assert finding is not None and finding["kind"] == "short_histories"
    assert "median training history is 3 items (mean 4.2, 5 users)" in finding["message"]
    assert "item-KNN" in finding["fix"]
    assert short_history_finding(LONG) is None


def test_a_model_above_every_baseline_has_no_finding():
    kw = {"epochs_trained": 3, "epochs_planned": 10, "lr": 1e-3, "history": FLAT, "summary": LONG}
    assert baseline_finding("bert4rec", 0.07, BASELINES, **kw) is None
    found = baseline_finding("bert4rec", 0.06, BASELINES, **kw)  # a tie is not a win
    assert found is not None and found["best_baseline"] == "item_knn"


@pytest.mark.parametrize(
    ("history", "summary", "cause", "fix"),
    [
        (RISING, SHORT, "too-short histories (median 3 items)", "item-KNN"),
        (RISING, LONG, "too few epochs: validation NDCG@10 was still rising after 2 of 2", "train.epochs"),
        (FLAT, LONG, "the learning rate (0.001)", "higher train.lr (e.g. 0.003"),
    ],
)
def test_the_likely_cause_and_fix(history, summary, cause, fix):
    found = baseline_finding(
        "sasrec",
        0.05,
        BASELINES,
        epochs_trained=len(history),
        epochs_planned=2,
        lr=1e-3,
        history=history,
        summary=summary,
    )
    assert found is not None and found["kind"] == "below_baselines"
    assert "sasrec does not beat the baselines on validation NDCG@10: 0.0500 against" in found["message"]
    assert "popularity 0.0300, item_knn 0.0600" in found["message"]
    assert cause in found["message"] and fix in found["fix"]


def test_diagnostics_entry():
    entry = diagnostics("bert4rec", 0.02, BASELINES, SHORT, epochs_trained=2, epochs_planned=2, lr=1e-3)
    assert entry["val_ndcg@10"] == {"bert4rec": 0.02, **BASELINES} and entry["beats_baselines"] is False
    assert [f["kind"] for f in entry["findings"]] == ["short_histories", "below_baselines"]
    assert entry["history_length"]["median"] == 3.0
    good = diagnostics("bert4rec", 0.2, BASELINES, LONG, epochs_trained=2, epochs_planned=2, lr=1e-3)
    assert good["beats_baselines"] is True and good["findings"] == []
