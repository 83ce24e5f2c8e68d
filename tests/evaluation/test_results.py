import json
from pathlib import Path

import numpy as np
import pytest

from bert4rec.evaluation.results import make_record, markdown_table, run_metadata, write_records


def fake_metrics(hr: float) -> dict:
    return {
        "full": {"hr@10": hr, "ndcg@10": hr / 2, "mrr": hr / 3},
        "sampled_popularity": {"hr@10": min(1.0, 3 * hr), "ndcg@10": 1.5 * hr},
        "sampled_uniform": {"hr@10": min(1.0, 5 * hr), "ndcg@10": 2.5 * hr},
        "coverage@10": 0.42,
        "long_tail": {"head": {"n_users": 3, "hr@10": hr, "ndcg@10": None}},
        "n_users": 10,
        "protocol": {"split": "test", "filter_seen": True, "n_negatives": 100, "tie_policy": "pessimistic"},
    }


def records() -> list[dict]:
    return [
        make_record("bert4rec", "ml-1m", fake_metrics(0.2), 12.5, {"model": {"hidden_size": 64}}, epochs=3),
        make_record("popularity", "ml-1m", fake_metrics(0.05), 0.1, {"baseline": {}}),
    ]


def test_make_record_has_the_documented_shape():
    rec = make_record("bert4rec", "ml-1m", fake_metrics(0.2), 12.5, {"a": 1}, epochs=3, run={"seed": 1})
    assert list(rec) == ["model", "dataset", "metrics", "train_seconds", "config", "epochs", "run"]
    assert rec["model"] == "bert4rec" and rec["dataset"] == "ml-1m" and rec["train_seconds"] == 12.5
    assert rec["metrics"]["full"]["ndcg@10"] == 0.1
    with pytest.raises(ValueError, match="'full' section"):
        make_record("a", "b", {"hr@10": 0.1}, 1.0, {})


def test_run_metadata_records_versions_platform_and_data():
    meta = run_metadata({"train": {"lr": 0.001}}, 42, "abc123", {"n_users": 10})
    assert meta["seed"] == 42 and meta["data_fingerprint"] == "abc123"
    assert meta["data_stats"] == {"n_users": 10}
    assert set(meta["versions"]) == {"python", "torch", "lightning", "numpy", "polars", "bert4rec"}
    assert meta["versions"]["torch"] and meta["versions"]["numpy"]
    assert meta["cpu_count"] and meta["platform"] and meta["timestamp"].endswith("+00:00")
    assert meta["config_sha256"] == run_metadata({"train": {"lr": 0.001}}, 0, "", {})["config_sha256"]
    assert meta["config_sha256"] != run_metadata({"train": {"lr": 0.01}}, 0, "", {})["config_sha256"]
    json.dumps(meta)


def test_write_records_round_trips_and_writes_a_table(tmp_path):
    recs = records()
    recs[0]["numpy_value"] = np.float32(0.5)
    recs[0]["path"] = Path("/some/where")
    folder, table = write_records(recs, tmp_path / "results", "ml-1m")
    assert folder == tmp_path / "results" and table == folder / "ml-1m.md"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["ml-1m.md", "ml-1m_bert4rec.json", "ml-1m_popularity.json"]
    loaded = json.loads((folder / "ml-1m_bert4rec.json").read_text())
    assert loaded["numpy_value"] == 0.5 and loaded["path"] == "/some/where"
    del loaded["numpy_value"], loaded["path"]
    assert loaded == records()[0]
    assert json.loads((folder / "ml-1m_popularity.json").read_text()) == records()[1]
    text = table.read_text()
    assert "| bert4rec |" in text and "| popularity |" in text and "100 negatives" in text
    assert "0.2000" in text and "0.1000" in text and "12.5" in text


def test_write_records_replaces_files_and_leaves_no_temporary_files(tmp_path):
    write_records(records(), tmp_path, "run")
    updated = records()[:1]
    updated[0]["train_seconds"] = 99.0
    write_records(updated, tmp_path, "run")
    assert json.loads((tmp_path / "run_bert4rec.json").read_text())["train_seconds"] == 99.0
    assert "| popularity |" not in (tmp_path / "run.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failed_write_leaves_the_old_file_intact(tmp_path):
    write_records(records()[:1], tmp_path, "run")
    before = (tmp_path / "run_bert4rec.json").read_text()
    broken = records()[:1]
    broken[0]["bad"] = object()
    with pytest.raises(TypeError, match="not JSON serialisable"):
        write_records(broken, tmp_path, "run")
    assert (tmp_path / "run_bert4rec.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.md", "run_bert4rec.json"]


def test_duplicate_model_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="share a model name"):
        write_records([records()[0], records()[0]], tmp_path, "run")


def test_markdown_table_has_one_row_per_model_and_tolerates_missing_metrics():
    partial = make_record("mf", "ml-1m", {"full": {"hr@10": 0.1, "ndcg@10": 0.05, "mrr": 0.04}}, 3.0, {})
    text = markdown_table([*records(), partial])
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 3  # header, separator, three models
    header = lines[0]
    for column in (
        "HR@10",
        "NDCG@10",
        "MRR",
        "HR@10 (sampled, popularity)",
        "NDCG@10 (sampled, uniform)",
        "coverage@10",
        "train s",
    ):
        assert column in header
    assert lines[-1].startswith("| mf | 0.1000 | 0.0500 | 0.0400 | - |")
    assert "Dataset: ml-1m" in text and "sampled with 100 negatives" in text


def _seed_record(seed: int, ndcg: float, **train: object) -> dict:
    config = {"model": {"hidden_size": 128}, "train": {"seed": seed, "lr": 0.004, **train}}
    metrics = {"full": {"ndcg@10": ndcg, "hr@10": 2 * ndcg}, "coverage@10": 0.5}
    return {"model": "bert4rec", "dataset": "ml-1m", "metrics": metrics, "train_seconds": 60.0 + seed,
            "config": config, "epochs": seed}  # fmt: skip


def test_seed_summary_is_the_mean_and_sample_std_over_seeds():
    from bert4rec.evaluation.results import seed_summary, seed_table

    s = seed_summary([_seed_record(42, 0.16), _seed_record(43, 0.17), _seed_record(44, 0.18)])
    ndcg = s["metrics"]["full"]["ndcg@10"]
    assert ndcg["values"] == [0.16, 0.17, 0.18] and abs(ndcg["mean"] - 0.17) < 1e-12
    assert abs(ndcg["std"] - 0.01) < 1e-12  # sample standard deviation (n - 1)
    assert s["seeds"] == [42, 43, 44] and s["n_runs"] == 3 and "seed" not in s["config"]["train"]
    assert s["epochs"]["mean"] == 43.0 and "coverage@10" not in s["metrics"]
    row = seed_table([s]).splitlines()[-1]
    assert row.startswith("| bert4rec | 0.3400 ± 0.0200 | 0.1700 ± 0.0100 | - |")
    assert row.endswith("| 42, 43, 44 |")
    assert seed_summary([_seed_record(42, 0.16)])["metrics"]["full"]["ndcg@10"]["std"] is None


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([_seed_record(42, 0.1), _seed_record(43, 0.1, lr=0.002)], "differ in more than the seed: train.lr"),
        ([_seed_record(42, 0.1), _seed_record(42, 0.2)], "a seed appears twice"),
        ([_seed_record(42, 0.1), {**_seed_record(43, 0.1), "model": "sasrec"}], "records mix models"),
        ([], "no records"),
    ],
)
def test_seed_summary_refuses_rows_that_would_average_different_runs(records, message):
    from bert4rec.evaluation.results import seed_summary

    with pytest.raises(ValueError, match=message):
        seed_summary(records)


def test_seed_summary_fills_settings_a_record_predates_with_their_defaults():
    """A record written before a setting existed ran with its default: it still pairs with a record
    that names that default, and not with one that changed it."""
    from bert4rec.evaluation.results import seed_summary

    older = _seed_record(42, 0.1)  # no train.output_bias_init: written before the setting existed
    s = seed_summary([older, _seed_record(43, 0.1, output_bias_init="zeros")])
    assert s["n_runs"] == 2 and s["config"]["train"]["output_bias_init"] == "zeros"
    with pytest.raises(ValueError, match="train.output_bias_init"):
        seed_summary([older, _seed_record(43, 0.1, output_bias_init="log_popularity")])
