"""Benchmark: one configuration, several seeds; a results row as mean ± standard deviation.

Runs `compare_models.py` once per seed (`--name <name>-seed<seed>`, `--set train.seed=<seed>`, the
arguments after `--` passed on), `--jobs` at a time, each pinned to its own CPU core on Linux, then
writes `benchmarks/results/<study>/<name>.md` (mean ± sample standard deviation per model) and
`<name>_mean.json` (the summaries: every seed's value, the shared config). The per-seed records stay
as compare_models writes them (`<name>-seed<seed>_<model>.json`). A summary refuses runs that differ
in more than the seed.

    python benchmarks/seeds.py --name ml-1m-60min-bert4rec-h128 --study ml-1m-records \
        --seeds 42,43,44 --jobs 2 -- --preset ml-1m --data-dir ../shared/data/ml-1m --models bert4rec \
        --minutes 60 --set train.num_threads=1 --set model.hidden_size=128

`--summarise-only` skips the runs and summarises the records already there.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from compare_models import RESULTS, study_dir

from bert4rec.evaluation.results import seed_summary, seed_table
from bert4rec.io import atomic_write_text

HERE = Path(__file__).resolve().parent


def run_seeds(
    name: str,
    study: str | None,
    seeds: list[int],
    jobs: int,
    passed: list[str],
    logs: Path,
    grace_s: float = 30.0,
) -> None:
    """Run compare_models once per seed, `jobs` at a time (one core each); raise when a run fails.

    Stopped by SIGTERM or Ctrl-C, it stops its running seeds too (SIGTERM, then SIGKILL after
    `grace_s`: Lightning only ends a run at a step boundary) and exits naming them, so no run is
    left training unseen on a core."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    logs.mkdir(parents=True, exist_ok=True)
    pending = list(seeds)
    running: dict[int, tuple[subprocess.Popen[bytes], int | None]] = {}  # seed -> (process, core)
    failed: list[str] = []

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while pending or running:
            free = [c for c in cores if c not in {core for _, core in running.values()}]
            while pending and len(running) < jobs:
                seed = pending.pop(0)
                core = free.pop(0) if jobs > 1 and free else None
                cmd = [
                    sys.executable,
                    str(HERE / "compare_models.py"),
                    *passed,
                    "--name",
                    f"{name}-seed{seed}",
                ]
                cmd += ["--set", f"train.seed={seed}"] + (["--study", study] if study else [])
                pin = (lambda c=core: os.sched_setaffinity(0, {c})) if core is not None else None
                log = logs / f"{name}-seed{seed}.log"
                print(f"seed {seed}: started{f' on core {core}' if core is not None else ''} (log: {log})")
                with log.open("wb") as out:  # the child keeps its own copy of the descriptor
                    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pin)
                running[seed] = (proc, core)
            time.sleep(5)
            for seed, (proc, _) in list(running.items()):
                if proc.poll() is not None:
                    del running[seed]
                    print(f"seed {seed}: exit code {proc.returncode}")
                    if proc.returncode:
                        failed.append(f"seed {seed} (log: {logs / f'{name}-seed{seed}.log'})")
    except BaseException as err:  # SIGTERM (above), Ctrl-C or an error: stop the runs before leaving
        if running:
            _stop_runs({seed: proc for seed, (proc, _) in running.items()}, grace_s)
            raise SystemExit(
                f"{err or type(err).__name__}; stopped the runs of seeds {sorted(running)}"
            ) from err
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failed:
        raise SystemExit(f"runs failed: {', '.join(failed)}")


def _stop_runs(procs: dict[int, subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM each run, SIGKILL those still alive after `grace_s`, and wait for them all."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def summarise(name: str, folder: Path) -> Path:
    """Write `<name>.md` and `<name>_mean.json` from the `<name>-seed*_<model>.json` records."""
    by_model: dict[str, list[dict]] = {}
    for path in sorted(folder.glob(f"{name}-seed*_*.json")):
        record = json.loads(path.read_text())
        if isinstance(record.get("metrics"), dict):
            by_model.setdefault(str(record["model"]), []).append(record)
    if not by_model:
        raise SystemExit(f"no records {folder}/{name}-seed*_<model>.json to summarise")
    try:
        summaries = [seed_summary(records) for records in by_model.values()]
    except ValueError as err:
        raise SystemExit(f"{folder}/{name}-seed*: {err}") from None
    atomic_write_text(folder / f"{name}_mean.json", json.dumps(summaries, indent=2) + "\n")
    table = folder / f"{name}.md"
    atomic_write_text(table, seed_table(summaries))
    return table


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passed = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="results name; each seed's run is <name>-seed<seed>")
    p.add_argument("--study", default=None, help="folder under benchmarks/results (as compare_models)")
    p.add_argument("--seeds", default="42,43,44")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, one CPU core each")
    p.add_argument("--logs", type=Path, default=Path("runs/benchmarks/seed-logs"))
    p.add_argument("--summarise-only", action="store_true", help="summarise the records already there")
    args = p.parse_args(own)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not args.summarise_only:
        if any(a in ("--name", "--study") for a in passed):
            p.error("give --name and --study before `--` (each seed's run gets <name>-seed<seed>)")
        run_seeds(args.name, args.study, seeds, max(1, args.jobs), passed, args.logs)
    folder = study_dir(f"{args.name}-seed{seeds[0]}", args.study, RESULTS)
    table = summarise(args.name, folder)
    print(table.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
