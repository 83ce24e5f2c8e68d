"""Benchmark: load an ML-25M-sized interaction log into leave-one-out sequences (project issue #5).

Generates a `ratings.csv` in the MovieLens-20M/25M layout (userId,movieId,rating,timestamp; by
default 25,000,000 rows, 162,541 users, 59,047 items as in ML-25M, Zipf item popularity, a
long-tailed spread of user history lengths, rows grouped by user as in the real file), then
prepares it (`bert4rec.pipeline.prepare`: read, validate, rating filter, dedup, 5-core, stable time
sort, id mapping, leave-one-out split) through each loading path in a FRESH subprocess, so that
each path's peak resident memory (`ru_maxrss`) is its own:

- `ml-25m`: the MovieLens loader, a Polars lazy scan that materialises only the four columns;
- `file`: the generic CSV loader (`data.dataset=file`), which reads the whole table eagerly.

Writes benchmarks/results/large-data/large_data.json and large_data.md (or into `--out`). The generated file
(~650 MB for 25M rows) is written once into `--workdir` and reused.

    python benchmarks/large_data.py --rows 25000000 --workdir /tmp/bert4rec-large-data

Smoke check (seconds):

    python benchmarks/large_data.py --rows 200000 --users 2000 --items 1000 \
        --workdir /tmp/large_data_smoke --out /tmp/large_data_smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# results are grouped by study: benchmarks/results/<study>/ (index: docs/benchmarks/index.md)
RESULTS = Path(__file__).resolve().parent / "results" / "large-data"


def generate_ratings_csv(
    path: Path, n_rows: int, n_users: int, n_items: int, seed: int = 0
) -> dict[str, Any]:
    """Write an ML-25M-layout ratings.csv with `n_rows` rows (rows grouped by user, times increasing
    within a user except for a few exact ties) via a temp file and a rename. Returns its stats."""
    import polars as pl

    from bert4rec.io import atomic_path

    rng = np.random.default_rng(seed)
    # history lengths: lognormal like MovieLens (median ~70, long tail), at least 20 as in ML's export
    if n_rows < 20 * n_users:
        raise SystemExit(f"--rows {n_rows} is too few for {n_users} users with >= 20 ratings each")
    weights = rng.lognormal(4.3, 1.1, n_users)
    lengths = 20 + rng.multinomial(n_rows - 20 * n_users, weights / weights.sum()).astype(np.int64)
    users = np.repeat(np.arange(1, n_users + 1, dtype=np.int64), lengths)
    rank_weight = 1.0 / np.arange(1, n_items + 1) ** 0.9
    item_ids = rng.permutation(n_items) + 1
    items = item_ids[np.searchsorted(np.cumsum(rank_weight) / rank_weight.sum(), rng.random(n_rows))]
    starts = rng.integers(946_684_800, 1_500_000_000, n_users)  # 2000..2017
    gaps = rng.exponential(3600.0, n_rows).astype(np.int64)  # 0-second gaps give timestamp ties
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    ts = np.cumsum(gaps)
    ts = ts - np.repeat(ts[bounds[:-1]], lengths) + np.repeat(starts, lengths)
    ratings = rng.integers(1, 11, n_rows) / 2.0
    frame = pl.DataFrame({"userId": users, "movieId": items, "rating": ratings, "timestamp": ts})
    with atomic_path(path, mode=0o644) as tmp:
        frame.write_csv(tmp)
    return {"rows": n_rows, "users": n_users, "items": n_items, "bytes": path.stat().st_size}


def _measure(path: str, variant: str) -> None:
    """Child process: prepare the data through one loader; print one JSON line."""
    import polars as pl

    from bert4rec.config import build_config
    from bert4rec.pipeline import prepare

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if variant == "ml-25m":
        overrides: dict[str, Any] = {"data": {"dataset": "ml-25m", "data_dir": str(Path(path).parent)}}
    else:
        overrides = {
            "data": {
                "dataset": "file", "path": path, "user_col": "userId", "item_col": "movieId",
                "time_col": "timestamp",
            }
        }  # fmt: skip
    cfg = build_config(None, overrides)
    start = time.perf_counter()
    prepared = prepare(cfg)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    split = prepared.split
    print(
        json.dumps(
            {
                "variant": variant,
                "prepare_seconds": round(seconds, 2),
                "peak_rss_gb": round(peak_kb / 2**20, 2),
                "rss_before_gb": round(base / 2**20, 2),
                "users": split.vocab.n_users,
                "items": split.n_items,
                "interactions": int(prepared.interactions.stats["interactions"]),
                "train_interactions": int(sum(len(s) for s in split.train)),
                "stats": prepared.interactions.stats,
                "polars": pl.__version__,
                "polars_threads": pl.thread_pool_size(),
            }
        )
    )


def _markdown(record: dict[str, Any]) -> str:
    gen = record["generated"]
    lines = [
        f"Generated ML-25M-layout ratings.csv: {gen['rows']:,} rows, {gen['users']:,} users, "
        f"{gen['items']:,} items, {gen['bytes'] / 1e6:,.0f} MB; machine: {record['machine']}. "
        "Each loader ran in a fresh process (peak RSS is its own; growth = peak minus the process's "
        "RSS just before prepare, after its imports); prepare = read, validate, "
        "dedup, 5-core, stable time sort, id mapping, leave-one-out split.",
        "",
        "| loader | prepare s | peak RSS GB | growth GB | growth / file size | users | items "
        "| interactions |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in record["runs"]:
        growth = r["peak_rss_gb"] - r["rss_before_gb"]
        lines.append(
            f"| {r['variant']} | {r['prepare_seconds']:.1f} | {r['peak_rss_gb']:.2f} | {growth:.2f} | "
            f"{growth * 2**30 / gen['bytes']:.1f}x | {r['users']:,} | {r['items']:,} | "
            f"{r['interactions']:,} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=25_000_000)
    p.add_argument("--users", type=int, default=162_541)
    p.add_argument("--items", type=int, default=59_047)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bert4rec-large-data"))
    p.add_argument("--variants", default="ml-25m,file")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--measure", nargs=2, metavar=("PATH", "VARIANT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        _measure(*args.measure)
        return 0

    from bert4rec.io import atomic_write_text, write_json_and_markdown

    args.workdir.mkdir(parents=True, exist_ok=True)
    csv = args.workdir / "ratings.csv"
    meta = args.workdir / "generated.json"
    wanted = {"rows": args.rows, "users": args.users, "items": args.items}
    generated = json.loads(meta.read_text()) if meta.exists() and csv.exists() else None
    if generated is None or {k: generated[k] for k in wanted} != wanted:
        start = time.perf_counter()
        generated = generate_ratings_csv(csv, args.rows, args.users, args.items)
        generated["generate_seconds"] = round(time.perf_counter() - start, 1)
        atomic_write_text(meta, json.dumps(generated))
    print(f"data: {csv} {generated}")

    runs = []
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        cmd = [sys.executable, __file__, "--measure", str(csv), variant]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{variant}: the measuring process failed (rc {proc.returncode})")
        run = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{variant}: {run['prepare_seconds']} s, peak RSS {run['peak_rss_gb']} GB")
        runs.append(run)
    record = {
        "benchmark": "large_data",
        "generated": generated,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "runs": runs,
    }
    table = _markdown(record)
    write_json_and_markdown(args.out, "large_data", record, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
