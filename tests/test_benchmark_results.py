"""benchmarks/results is grouped by study: every file in a study folder, every folder in the docs index,
and the scripts' default output paths point into those folders."""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
INDEX = ROOT / "docs" / "benchmarks" / "index.md"


def _load_script(name: str):
    """Import benchmarks/<name>.py as a module (the scripts import their sibling `plots` by name)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def _studies() -> list[str]:
    return sorted(p.name for p in RESULTS.iterdir() if p.is_dir())


def test_every_results_file_is_in_a_study_folder():
    flat = sorted(p.name for p in RESULTS.iterdir() if p.is_file())
    assert flat == [], f"benchmarks/results/ holds files outside a study folder: {flat}"
    for study in _studies():
        files = list((RESULTS / study).iterdir())
        assert files, f"empty study folder {study}"
        assert all(p.is_file() for p in files), f"{study} has nested folders"


def test_the_docs_index_lists_every_study():
    index = INDEX.read_text()
    linked = set(re.findall(r"benchmarks/results/([\w.-]+)/", index))
    assert linked == set(_studies()), f"docs index vs folders: {sorted(linked ^ set(_studies()))}"


@pytest.mark.parametrize(
    ("script", "study"),
    [
        ("train_speed", "train-speed"),
        ("sweep", "sweeps"),
        ("large_catalog", "large-catalog"),
        ("large_data", "large-data"),
        ("serve_latency", "serving"),
        ("serve_overload", "serving"),
        ("onnx_vs_eager", "serving"),
        ("vector_index", "serving"),
        ("cold_start", "cold-start"),
        ("peer_comparison", "peer-comparison"),
        ("genre_metrics", "genre-metrics"),
        ("first_run", "first-run"),
    ],
)
def test_single_study_scripts_write_into_their_study_folder(script, study):
    source = (ROOT / "benchmarks" / f"{script}.py").read_text()
    assert f'RESULTS = Path(__file__).resolve().parent / "results" / "{study}"' in source
    assert (RESULTS / study).is_dir()


def test_compare_models_joins_the_study_that_holds_the_name(tmp_path):
    compare = _load_script("compare_models")
    # an existing results name goes back to its folder, so the table merges the earlier records
    assert compare.study_dir("ml-1m-40min", None) == RESULTS / "ml-1m-headline"
    assert compare.study_dir("ml-1m-sasrec-30min-h128", None) == RESULTS / "sasrec-ablations"
    assert compare.study_dir("beauty-25min", None) == RESULTS / "beauty"
    # a new name gets a folder of its own; --study wins over both
    assert compare.study_dir("fresh-run", None, tmp_path) == tmp_path / "fresh-run"
    assert compare.study_dir("ml-1m-40min", "my-study") == RESULTS / "my-study"
    with pytest.raises(SystemExit, match="one folder name"):
        compare.study_dir("x", "../outside")


def test_report_reads_the_sweeps_folder_by_default():
    from bert4rec.cli import report

    default = inspect.signature(report).parameters["benchmarks"].default
    assert Path(default) == Path("benchmarks/results/sweeps")
    assert sorted((ROOT / default).glob("sweep_*.md")), "no sweep tables where `bert4rec report` looks"


def test_seeds_script_summarises_the_per_seed_records(tmp_path):
    import json

    seeds = _load_script("seeds")
    for seed, ndcg in [(42, 0.16), (43, 0.18)]:
        record = {"model": "sasrec", "dataset": "ml-1m", "metrics": {"full": {"ndcg@10": ndcg}},
                  "train_seconds": 10.0, "config": {"train": {"seed": seed}}}  # fmt: skip
        (tmp_path / f"run-seed{seed}_sasrec.json").write_text(json.dumps(record))
    table = seeds.summarise("run", tmp_path)
    assert "| sasrec | - | 0.1700 ± 0.0141 |" in table.read_text()
    (summary,) = json.loads((tmp_path / "run_mean.json").read_text())
    assert summary["metrics"]["full"]["ndcg@10"]["values"] == [0.16, 0.18]
    with pytest.raises(SystemExit, match="no records"):
        seeds.summarise("other", tmp_path)


def test_ensemble_script_groups_the_seeds_and_records_the_members(
    tmp_path, monkeypatch, capsys, tiny_prepared
):
    import json

    from helpers import tiny_config

    from bert4rec.evaluation.results import write_records
    from bert4rec.pipeline import train_and_evaluate

    ensemble = _load_script("ensemble")
    runs, folder = tmp_path / "runs", tmp_path / "results" / "study"
    members = []
    for seed in (1, 2):  # the layout seeds.py leaves: a bundle per seed run, a record per seed
        run = train_and_evaluate(
            "sasrec", tiny_config(seed=seed), tiny_prepared, runs / f"tiny-seed{seed}", progress=False
        )
        write_records([run.record], folder, f"tiny-seed{seed}")
        members.append(run.record)
    monkeypatch.setattr(ensemble, "RESULTS", tmp_path / "results")
    argv = ["--name", "tiny", "--study", "study", "--runs", str(runs), "--seeds", "1,2", "--members", "2"]
    assert ensemble.main(argv) == 0
    record = json.loads((folder / "tiny-ens2-prob-seed1_sasrec_ensemble.json").read_text())
    assert record["model"] == "sasrec_ensemble" and record["ensemble"]["member_seeds"] == [1, 2]
    assert record["train_seconds"] == pytest.approx(sum(m["train_seconds"] for m in members), abs=0.01)
    assert record["ensemble"]["member_ndcg@10"] == [m["metrics"]["full"]["ndcg@10"] for m in members]
    assert "| sasrec_ensemble |" in (folder / "tiny-ens2-prob.md").read_text()
    with pytest.raises(SystemExit):
        ensemble.main([*argv[:-1], "3"])
    assert "2 seeds do not split into ensembles of 3" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no record of seed 3"):
        ensemble.ensemble_record([("tiny", 1), ("tiny", 3)], folder, runs, "sasrec", "log_prob")
    # a mixed ensemble: members of two rows, ensemble i takes the i-th group of each row's seeds
    other = train_and_evaluate(
        "sasrec", tiny_config(seed=3, lr=0.005), tiny_prepared, runs / "other-seed3", progress=False
    )
    write_records([other.record], folder, "other-seed3")
    mixed = ["--name", "tiny", "--seeds", "1", "--name", "other", "--seeds", "3", "--members", "2"]
    with pytest.raises(SystemExit):
        ensemble.main([*argv[2:6], *mixed])
    assert "needs a --label" in capsys.readouterr().err
    assert ensemble.main([*argv[2:6], *mixed, "--label", "mix"]) == 0
    record = json.loads((folder / "mix-ens2-prob-seed1_sasrec_ensemble.json").read_text())
    assert record["ensemble"]["member_seeds"] == [1, 3]
    assert record["ensemble"]["member_records"] == ["tiny-seed1_sasrec.json", "other-seed3_sasrec.json"]
    assert record["ensemble"]["member_differences"] == [[], ["train.lr"]]


def test_ensemble_groups_take_the_ith_group_of_each_row():
    groups = _load_script("ensemble").groups
    assert groups(["a"], [[1, 2, 3, 4]], 2) == [[("a", 1), ("a", 2)], [("a", 3), ("a", 4)]]
    assert groups(["a", "b"], [[1, 2, 5, 6], [3, 7]], 3) == [
        [("a", 1), ("a", 2), ("b", 3)],
        [("a", 5), ("a", 6), ("b", 7)],
    ]
    with pytest.raises(ValueError, match="do not split into ensembles of 3"):
        groups(["a"], [[1, 2]], 3)
    with pytest.raises(ValueError, match="--seeds of a: 3 ensembles need a multiple of 3"):
        groups(["a", "b"], [[1, 2], [3, 4, 5, 6]], 2)


def _seeds_with_fake_runs(tmp_path: Path, monkeypatch, body: str):
    """benchmarks/seeds.py whose compare_models.py is a stand-in: `body` runs with `name` (the run's
    --name) and OUT (tmp_path) defined and json, os, signal, sys and time imported."""
    seeds = _load_script("seeds")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "compare_models.py").write_text(
        "import json, os, signal, sys, time\n"
        f"OUT = {str(tmp_path)!r}\n"
        "name = sys.argv[sys.argv.index('--name') + 1]\n" + body
    )
    monkeypatch.setattr(seeds, "HERE", fake)
    return seeds


def test_a_stopped_seeds_run_stops_its_training_runs_too(tmp_path, monkeypatch):
    """SIGTERM to seeds.py ends its runs (SIGKILL for one that ignores SIGTERM, as a Lightning run
    mid-step may) instead of leaving them training on the cores."""
    import os
    import signal
    import threading
    import time

    seeds = _seeds_with_fake_runs(
        tmp_path,
        monkeypatch,
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "open(os.path.join(OUT, name + '.pid'), 'w').write(str(os.getpid()))\n"
        "time.sleep(600)\n",
    )
    pid_files = [tmp_path / f"run-seed{s}.pid" for s in (1, 2)]

    def terminate_once_both_run() -> None:
        deadline = time.monotonic() + 60
        while not all(f.exists() and f.read_text() for f in pid_files) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=terminate_once_both_run, daemon=True).start()
    with pytest.raises(SystemExit, match=r"stopped the runs of seeds \[1, 2\]"):
        seeds.run_seeds("run", None, [1, 2, 3], 2, [], tmp_path / "logs", grace_s=0.5)
    pids = [int((tmp_path / f"run-seed{s}.pid").read_text()) for s in (1, 2)]
    for pid in pids:  # reaped by run_seeds: the pid no longer exists
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (tmp_path / "run-seed3.pid").exists()  # the pending seed never started
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is restored


def test_seeds_variants_run_every_variant_and_seed_in_one_pool(tmp_path, monkeypatch):
    """--variant: one row <name>-<variant> per variant, its overrides after the shared arguments,
    every (variant, seed) run through the same pool."""
    record_args = "open(os.path.join(OUT, name + '.args'), 'w').write(json.dumps(sys.argv[1:]))\n"
    seeds = _seeds_with_fake_runs(tmp_path, monkeypatch, record_args)
    variants = seeds.parse_variants(["base=", "fast=train.lr=0.004,model.num_heads=4"])
    assert variants == {"base": [], "fast": ["--set", "train.lr=0.004", "--set", "model.num_heads=4"]}
    seeds.run_seeds("run", None, [1, 2], 3, ["--models", "sasrec"], tmp_path / "logs", variants=variants)
    import json

    runs = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.args")}
    assert sorted(runs) == ["run-base-seed1", "run-base-seed2", "run-fast-seed1", "run-fast-seed2"]
    fast = runs["run-fast-seed2"]
    assert fast[:6] == ["--models", "sasrec", "--set", "train.lr=0.004", "--set", "model.num_heads=4"]
    assert fast[fast.index("--set", 6) :] == ["--set", "train.seed=2"]
    assert "train.lr=0.004" not in runs["run-base-seed1"]


@pytest.mark.parametrize(
    ("texts", "error"),
    [
        (["lr"], "expected NAME=section.field=value"),
        (["=train.lr=0.1"], "expected NAME=section.field=value"),
        (["a=", "a=train.lr=0.1"], "given twice"),
        (["a=lr=0.1"], "is not section.field=value"),
        (["a=train.lr"], "is not section.field=value"),
    ],
)
def test_seeds_variants_refuse_malformed_definitions(texts, error):
    seeds = _load_script("seeds")
    with pytest.raises(ValueError, match=error):
        seeds.parse_variants(texts)
