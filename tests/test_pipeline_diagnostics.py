"""After training, the run compares the model with popularity and item-KNN and says what to do."""

from __future__ import annotations

import json
import logging

import numpy as np
import polars as pl
import pytest
from helpers import tiny_config

from bert4rec.config import build_config
from bert4rec.evaluation.evaluator import Evaluator
from bert4rec.evaluation.results import write_records
from bert4rec.models.baselines import ItemKNNRecommender, PopularityRecommender
from bert4rec.pipeline import prepare, train_and_evaluate


def test_the_results_record_the_comparison_with_the_baselines(tmp_path, tiny_prepared):
    cfg = tiny_config(epochs=1)
    run = train_and_evaluate("bert4rec", cfg, tiny_prepared, tmp_path, progress=False, save_artifact=False)
    diag = run.record["diagnostics"]
    evaluator = Evaluator(tiny_prepared.split, cfg.eval)
    split = tiny_prepared.split
    for name, baseline in (("popularity", PopularityRecommender()), ("item_knn", ItemKNNRecommender())):
        expected = evaluator.evaluate_ndcg10(baseline.fit(split), which="val")
        assert diag["val_ndcg@10"][name] == pytest.approx(expected)
    model = run.record["best_val_ndcg@10"]
    assert diag["val_ndcg@10"]["bert4rec"] == model
    beats = model > max(diag["val_ndcg@10"]["popularity"], diag["val_ndcg@10"]["item_knn"])
    assert diag["beats_baselines"] is beats
    assert ("below_baselines" in [f["kind"] for f in diag["findings"]]) is (not beats)
    json_path, _ = write_records([run.record], tmp_path / "results", "results")
    saved = json.loads((tmp_path / "results" / "results_bert4rec.json").read_text())
    assert saved["diagnostics"]["val_ndcg@10"] == diag["val_ndcg@10"]
    # a second model on the same data reuses the fitted baselines
    cached = dict(tiny_prepared.baseline_val_ndcg)
    again = train_and_evaluate("sasrec", cfg, tiny_prepared, tmp_path, progress=False, save_artifact=False)
    assert tiny_prepared.baseline_val_ndcg == cached
    assert {k: v for k, v in again.record["diagnostics"]["val_ndcg@10"].items() if k != "sasrec"} == {
        k: v for k, v in diag["val_ndcg@10"].items() if k != "bert4rec"
    }


def test_short_histories_are_warned_about_with_the_numbers(tmp_path, caplog):
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(300), 4)  # 4 interactions each: 2 to train on after leave-one-out
    frame = pl.DataFrame(
        {"user_id": users, "item_id": rng.integers(0, 30, len(users)), "timestamp": np.arange(len(users))}
    )
    path = tmp_path / "short.csv"
    frame.write_csv(path)
    cfg = build_config(
        "demo",
        {
            "data": {"dataset": "file", "path": str(path), "min_user_interactions": 3, "duplicates": "keep"},
            "model": {"max_len": 8, "hidden_size": 16},
            "train": {"epochs": 1, "num_threads": 1},
        },
    )
    with caplog.at_level(logging.WARNING, logger="bert4rec.pipeline"):
        run = train_and_evaluate("bert4rec", cfg, prepare(cfg), tmp_path, progress=False, save_artifact=False)
    findings = {f["kind"]: f for f in run.record["diagnostics"]["findings"]}
    assert findings["short_histories"]["median_history"] < 5
    assert "median training history is" in caplog.text and "item-KNN" in caplog.text
    if "below_baselines" in findings:
        assert "too-short histories" in findings["below_baselines"]["message"]
