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

`--variant NAME=section.field=value[,section.field=value...]` (repeatable) makes one row per variant,
`<name>-<NAME>` with those overrides added (`NAME=` alone: the arguments as given), every variant's
seeds sharing the one pool of `--jobs` runs; each row gets its own summary. On a machine with many
cores or a GPU this explores several member designs at once at a fixed number of epochs (the steps a
CPU time budget gives), and `ensemble.py` then scores mixed ensembles of their members:

    python benchmarks/seeds.py --name ml-1m-gpu17 --study ml-1m-records --jobs 12 \
        --seeds 44,45 --variant base= --variant lr4e-3=train.lr=0.004 -- --preset ml-1m \
        --data-dir ../shared/data/ml-1m --models sasrec --set train.epochs=17 --set train.accelerator=gpu
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
    variants: dict[str, list[str]] | None = None,
) -> None:
    """Run compare_models once per seed, `jobs` at a time (one core each); raise when a run fails.
    With `variants` (name -> extra compare_models arguments) once per variant and seed, each
    variant's runs named `<name>-<variant>-seed<seed>`.

    Stopped by SIGTERM or Ctrl-C, it stops its running seeds too (SIGTERM, then SIGKILL after
    `grace_s`: Lightning only ends a run at a step boundary) and exits naming them, so no run is
    left training unseen on a core."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    logs.mkdir(parents=True, exist_ok=True)
    rows = {f"{name}-{v}": extra for v, extra in variants.items()} if variants else {name: []}
    pending = [(row, seed) for seed in seeds for row in rows]  # every variant's first seed first
    running: dict[tuple[str, int], tuple[subprocess.Popen[bytes], int | None]] = {}  # -> (process, core)
    failed: list[str] = []

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while pending or running:
            free = [c for c in cores if c not in {core for _, core in running.values()}]
            while pending and len(running) < jobs:
                row, seed = pending.pop(0)
                core = free.pop(0) if jobs > 1 and free else None
                cmd = [
                    sys.executable,
                    str(HERE / "compare_models.py"),
                    *passed,
                    *rows[row],
                    "--name",
                    f"{row}-seed{seed}",
                ]
                cmd += ["--set", f"train.seed={seed}"] + (["--study", study] if study else [])
                pin = (lambda c=core: os.sched_setaffinity(0, {c})) if core is not None else None
                log = logs / f"{row}-seed{seed}.log"
                where = f" on core {core}" if core is not None else ""
                print(f"{_label(row, seed, variants)}: started{where} (log: {log})")
                with log.open("wb") as out:  # the child keeps its own copy of the descriptor
                    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pin)
                running[(row, seed)] = (proc, core)
            time.sleep(5)
            for (row, seed), (proc, _) in list(running.items()):
                if proc.poll() is not None:
                    del running[(row, seed)]
                    print(f"{_label(row, seed, variants)}: exit code {proc.returncode}")
                    if proc.returncode:
                        log = logs / f"{row}-seed{seed}.log"
                        failed.append(f"{_label(row, seed, variants)} (log: {log})")
    except BaseException as err:  # SIGTERM (above), Ctrl-C or an error: stop the runs before leaving
        if running:
            _stop_runs(list(p for p, _ in running.values()), grace_s)
            stopped = [_label(row, seed, variants) for row, seed in sorted(running)]
            what = f"seeds {sorted(seed for _, seed in running)}" if not variants else ", ".join(stopped)
            raise SystemExit(f"{err or type(err).__name__}; stopped the runs of {what}") from err
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failed:
        raise SystemExit(f"runs failed: {', '.join(failed)}")


def _label(row: str, seed: int, variants: dict[str, list[str]] | None) -> str:
    """How the progress lines name a run: 'seed 44', or '<row> seed 44' with variants."""
    return f"{row} seed {seed}" if variants else f"seed {seed}"


def _stop_runs(procs: list[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM each run, SIGKILL those still alive after `grace_s`, and wait for them all."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
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
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=section.field=value[,...]: one row <name>-<NAME> per variant (repeatable)",
    )
    args = p.parse_args(own)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    try:
        variants = parse_variants(args.variant)
    except ValueError as err:
        p.error(str(err))
    if not args.summarise_only:
        if any(a in ("--name", "--study") for a in passed):
            p.error("give --name and --study before `--` (each seed's run gets <name>-seed<seed>)")
        run_seeds(args.name, args.study, seeds, max(1, args.jobs), passed, args.logs, variants=variants)
    for row in [f"{args.name}-{v}" for v in variants] or [args.name]:
        folder = study_dir(f"{row}-seed{seeds[0]}", args.study, RESULTS)
        table = summarise(row, folder)
        print(table.read_text())
    return 0


def parse_variants(texts: list[str]) -> dict[str, list[str]]:
    """`NAME=section.field=value,...` -> {NAME: ["--set", "section.field=value", ...]}, in order;
    ValueError for a missing or repeated name or an override without '=' in it."""
    variants: dict[str, list[str]] = {}
    for text in texts:
        name, sep, sets = text.partition("=")
        if not sep or not name.strip() or "/" in name:
            raise ValueError(f"--variant {text!r}: expected NAME=section.field=value[,...]")
        if name in variants:
            raise ValueError(f"--variant {name!r} given twice")
        pairs = [s.strip() for s in sets.split(",") if s.strip()]
        if bad := [s for s in pairs if "=" not in s or "." not in s.partition("=")[0]]:
            raise ValueError(f"--variant {name}: {bad[0]!r} is not section.field=value")
        variants[name] = [a for s in pairs for a in ("--set", s)]
    return variants


if __name__ == "__main__":
    sys.exit(main())
