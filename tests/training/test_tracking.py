"""Experiment tracking: MLflow (local SQLite store) and Weights & Biases (offline) beside the CSV logs."""

from __future__ import annotations

import collections
import importlib.util
import json
import struct
import time
from pathlib import Path

import pytest
from helpers import tiny_config

from bert4rec.training.tracking import flatten_metrics, make_tracker, mlflow_key, mlflow_uri


def test_metric_names_and_flattening():
    assert mlflow_key("val_ndcg@10") == "val_ndcg_at_10"
    assert mlflow_key("test/full/hr@10") == "test/full/hr_at_10"
    record = {
        "metrics": {
            "full": {"ndcg@10": 0.5, "mrr": 0.25},
            "coverage@10": 0.4,
            "long_tail": {"tail": {"ndcg@10": 0.1, "hr@10": None}},
            "protocol": {"n_negatives": 100},
        },
        "train_seconds": 1.5,
        "history": [{"epoch": 0}],
    }
    assert flatten_metrics(record) == {
        "test/full/ndcg@10": 0.5,
        "test/full/mrr": 0.25,
        "test/coverage@10": 0.4,
        "test/long_tail/tail/ndcg@10": 0.1,
        "train_seconds": 1.5,
    }


def test_csv_needs_no_tracker(tmp_path):
    assert make_tracker("csv", tmp_path, "bert4rec") is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed")
def test_mlflow_run_has_config_epoch_metrics_and_evaluation(tmp_path, tiny_prepared):
    from mlflow.tracking import MlflowClient

    from bert4rec.pipeline import compare

    cfg = tiny_config(logger="mlflow", epochs=2)
    runs, _ = compare(["bert4rec", "popularity"], cfg, tmp_path, prepared=tiny_prepared, progress=False)
    assert (tmp_path / "mlflow.db").exists()
    assert (tmp_path / "bert4rec" / "logs" / "metrics.csv").exists()  # the CSV logs are still written

    client = MlflowClient(mlflow_uri(tmp_path))
    experiment = client.get_experiment_by_name(tmp_path.name)
    found = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(found) == {"bert4rec", "popularity"}
    bert, record = found["bert4rec"], runs[0].record
    assert bert.info.status == "FINISHED"
    assert bert.data.params["model/hidden_size"] == "16"
    assert bert.data.params["train/logger"] == "mlflow"
    assert bert.data.params["run/data_fingerprint"] == tiny_prepared.split.fingerprint
    # one value per epoch, as in the CSV history
    for name in ("val_ndcg_at_10", "train_loss_epoch", "elapsed_s"):
        assert len(client.get_metric_history(bert.info.run_id, name)) == 2, name
    val = [m.value for m in client.get_metric_history(bert.info.run_id, "val_ndcg_at_10")]
    assert val == pytest.approx([row["val_ndcg@10"] for row in record["history"]], abs=1e-5)
    # the final evaluation: full and sampled, plus the markdown table as an artifact
    metrics = bert.data.metrics
    assert metrics["test/full/ndcg_at_10"] == pytest.approx(record["metrics"]["full"]["ndcg@10"])
    assert metrics["test/sampled_uniform/hr_at_10"] == pytest.approx(
        record["metrics"]["sampled_uniform"]["hr@10"]
    )
    assert "test/long_tail/tail/ndcg_at_10" in metrics
    assert [a.path for a in client.list_artifacts(bert.info.run_id)] == ["evaluation.md"]
    pop = found["popularity"]
    assert pop.data.params["model_type"] == "popularity"
    assert pop.data.metrics["test/full/ndcg_at_10"] == pytest.approx(
        runs[1].record["metrics"]["full"]["ndcg@10"]
    )


def _wandb_records(path: Path) -> list[bytes]:
    """Records of a `.wandb` file: a 7-byte header, then LevelDB-log chunks in 32 KiB blocks."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, out, buf = 7, [], b""
    while pos + 7 <= len(data):
        space = 32768 - pos % 32768
        if space < 7:
            pos += space
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # full
            out.append(chunk)
        elif kind == 2:  # first
            buf = chunk
        elif kind == 3:  # middle
            buf += chunk
        elif kind == 4:  # last
            out.append(buf + chunk)
        elif kind == 0 and length == 0:  # block padding
            pos += space - 7
    return out


def test_wandb_offline_writes_a_run_folder_with_the_metrics(tmp_path, tiny_prepared, monkeypatch):
    if importlib.util.find_spec("wandb") is None:
        pytest.skip("wandb is not installed")
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError as err:  # pragma: no cover - depends on the wandb version
        pytest.skip(f"cannot read wandb's run files with this wandb version: {err}")
    from bert4rec.pipeline import train_and_evaluate

    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = tiny_config(logger="wandb", epochs=2)
    run = train_and_evaluate("bert4rec", cfg, tiny_prepared, tmp_path, progress=False, save_artifact=False)
    # CI once read this run file with no history in it although finish() had returned. teardown()
    # waits for wandb's service process to exit; the poll then waits for the final evaluation row.
    import wandb

    wandb.teardown()
    folders = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(folders) == 1, "offline mode: nothing was uploaded, the run is a local folder"
    run_file = next(folders[0].glob("run-*.wandb"))
    deadline = time.monotonic() + 30
    while True:
        history, config, kinds = [], {}, collections.Counter()
        for data in _wandb_records(run_file):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(data)
            kind = rec.WhichOneof("record_type")
            kinds[kind] += 1
            if kind == "history":
                history.append(
                    {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
                )
            elif kind == "config":
                config.update({i.key: json.loads(i.value_json) for i in rec.config.update})
        if any("test/full/ndcg@10" in h for h in history) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    diagnosis = f"{run_file.stat().st_size} bytes, records {dict(kinds)}"
    val = [h["val_ndcg@10"] for h in history if "val_ndcg@10" in h]
    assert val == pytest.approx([row["val_ndcg@10"] for row in run.record["history"]], abs=1e-5), diagnosis
    assert sum("train_loss_epoch" in h for h in history) == 2
    final = [h for h in history if "test/full/ndcg@10" in h]
    assert final and final[0]["test/full/ndcg@10"] == pytest.approx(run.record["metrics"]["full"]["ndcg@10"])
    assert "test/sampled_popularity/ndcg@10" in final[0]
    assert config["model"]["hidden_size"] == 16 and config["train"]["logger"] == "wandb"
