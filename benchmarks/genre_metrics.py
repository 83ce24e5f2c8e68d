"""Benchmark: genre-level metrics (genre_precision@10, genre_ndcg@10) on ML-1M for every model.

Prepares ML-1M, trains BERT4Rec and SASRec with the `ml-1m` preset for a FIXED number of epochs
(no time budget, no early stop before the last epoch; the best validation epoch is evaluated, as
in every run) on one torch thread, fits the popularity, item-KNN and MF baselines, and evaluates
all of them with the one evaluator (full ranking plus the sampled modes; genre metrics on the full
ranking). Writes `benchmarks/results/genre-metrics/genre_metrics_ml-1m.json` (the result records,
one per model, as `pipeline.train_and_evaluate` makes them) and `genre_metrics_ml-1m.md` (the
usual metrics table and a genre table).

These Transformers are short runs (~10 min each), not the README's 40-min models.

    python benchmarks/genre_metrics.py --data-dir ../shared/data/ml-1m
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bert4rec.config import MODEL_TYPES, build_config, deep_merge, option_overrides
from bert4rec.evaluation.results import _json_default, markdown_table
from bert4rec.io import atomic_write_text
from bert4rec.pipeline import prepare, train_and_evaluate

RESULTS = Path(__file__).resolve().parent / "results" / "genre-metrics"
GENRE_KS = (10,)


def genre_table(records: list[dict[str, Any]]) -> str:
    """Markdown: genre_precision@10 / genre_ndcg@10 beside the exact-item HR@10 / NDCG@10 (full ranking)."""
    cols = [("hr@10", "HR@10"), ("ndcg@10", "NDCG@10")]
    for k in GENRE_KS:
        cols += [(f"genre_precision@{k}", f"genre P@{k}"), (f"genre_ndcg@{k}", f"genre NDCG@{k}")]
    lines = [
        "| model | epochs | train s | " + " | ".join(label for _, label in cols) + " |",
        "|---|---:|---:|" + "---:|" * len(cols),
    ]
    for r in records:
        full = r["metrics"]["full"]
        cells = [str(r["model"]), str(r.get("epochs") or "-"), f"{r['train_seconds']:.0f}"]
        cells += [f"{full[key]:.4f}" if key in full else "-" for key, _ in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data/ml-1m"))
    p.add_argument("--models", default=",".join(MODEL_TYPES))
    p.add_argument("--bert4rec-epochs", type=int, default=20)
    p.add_argument("--sasrec-epochs", type=int, default=5)
    p.add_argument("--name", default="genre_metrics_ml-1m")
    p.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    p.add_argument("--note", default="", help="what else ran on the machine meanwhile (into the results)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("lightning").setLevel(logging.WARNING)
    torch.set_num_threads(1)

    epochs = {"bert4rec": args.bert4rec_epochs, "sasrec": args.sasrec_epochs}
    # fixed epochs: no early stopping ends a run before its last epoch
    per_model = {
        m: {"train": {"epochs": e, "patience": None, "max_minutes": None}} for m, e in epochs.items()
    }
    overrides = deep_merge(
        option_overrides([], args.data_dir), {"train": {"num_threads": 1}, "per_model": per_model}
    )
    cfg = build_config("ml-1m", overrides)
    prepared = prepare(cfg)
    print(f"prepared ML-1M in {prepared.seconds:.1f} s: {prepared.stats}", flush=True)
    records = []
    started = time.time()
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        load_before = os.getloadavg()
        run = train_and_evaluate(
            model, cfg, prepared, args.out / args.name, progress=False, save_artifact=False
        )
        rec = run.record
        rec["load_average_1_5_15min"] = {"before": list(load_before), "after": list(os.getloadavg())}
        full = {"genre_precision@10": float("nan"), "genre_ndcg@10": float("nan"), **rec["metrics"]["full"]}
        print(
            f"{model}: ndcg@10={full['ndcg@10']:.4f} genre_precision@10={full['genre_precision@10']:.4f} "
            f"genre_ndcg@10={full['genre_ndcg@10']:.4f} train {rec['train_seconds']:.0f} s "
            f"eval {rec['eval_seconds']:.1f} s",
            flush=True,
        )
        records.append(rec)
    note = (
        "Shared machine: 2 CPU cores used at the same time by other work (other sessions' tests and "
        "benchmarks), so seconds are indicative only; the load average before and after each model is in "
        "its record. Transformers trained for a fixed number of epochs on one torch thread "
        f"(bert4rec {epochs['bert4rec']}, sasrec {epochs['sasrec']}; picked to take ~10 min each on an "
        "idle machine, train_seconds says what they took here): short runs, not the README's 40-min "
        "models, so their exact-item numbers are below those." + (f" {args.note}" if args.note else "")
    )
    payload = {
        "benchmark": "genre_metrics",
        "dataset": "ml-1m",
        "note": note,
        "wall_seconds": round(time.time() - started, 1),
        "records": records,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        RESULTS / f"{args.name}.json", json.dumps(payload, indent=2, default=_json_default) + "\n"
    )
    definitions = records[0]["metrics"]["protocol"].get("genres", {})
    md = (
        f"# Genre-level metrics on ML-1M\n\n{note}\n\n"
        f"Definitions (docs/genre-metrics.md):\n\n- {definitions.get('genre_precision', '-')}\n"
        f"- {definitions.get('genre_ndcg', '-')}\n- {definitions.get('list', '-')}\n\n"
        "## Genre metrics (full ranking)\n\n"
        + genre_table(records)
        + "\n## Exact-item metrics\n\n"
        + markdown_table(records)
    )
    atomic_write_text(RESULTS / f"{args.name}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
