"""Benchmark: effect of one hyperparameter at a time (e.g. max_len, mask ratio) on validation NDCG@10.

Each value is trained from the same base config, on the same split, with the same wall-clock budget
(`--minutes`), and its best validation NDCG@10 (full ranking) is recorded together with its
validation curve. Writes benchmarks/results/sweeps/sweep_<name>.json, sweep_<name>.md and
sweep_<name>.png (best NDCG@10 per value, and NDCG@10 vs wall-clock minutes per value).

    python benchmarks/sweep.py --data-dir ../shared/data/ml-1m --minutes 4 \
        --param model.max_len=50,100,200 --param train.mask_prob=0.1,0.15,0.2,0.4
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from bert4rec.config import build_config, deep_merge, option_overrides, parse_overrides
from bert4rec.evaluation.results import run_metadata
from bert4rec.io import atomic_write_text
from bert4rec.pipeline import prepare
from bert4rec.training.fit import fit_transformer

# results are grouped by study: benchmarks/results/<study>/ (index: docs/benchmarks/index.md)
RESULTS = Path(__file__).resolve().parent / "results" / "sweeps"


def _parse_param(text: str) -> tuple[str, list[str]]:
    key, sep, values = text.partition("=")
    if not sep or "." not in key or not values:
        raise SystemExit(f"--param {text!r}: expected section.field=v1,v2,...")
    return key.strip(), [v.strip() for v in values.split(",") if v.strip()]


def _same_run_note(row: dict[str, Any]) -> str:
    return f" (same run as {row['same_run_as']})" if "same_run_as" in row else ""


def _plot(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    from plots import _pyplot, plot_curves, save_figure

    params = list(dict.fromkeys(r["param"] for r in rows))
    fig, axes = _pyplot().subplots(2, len(params), figsize=(5 * len(params), 7.5), squeeze=False)
    for col, param in enumerate(params):
        sub = [r for r in rows if r["param"] == param]
        ax = axes[0][col]
        ax.bar([str(r["value"]) for r in sub], [r["best_val_ndcg@10"] for r in sub], color="#4c72b0")
        ax.set_title(f"{param}: best validation NDCG@10")
        ax.set_xlabel(param)
        ax.set_ylabel("NDCG@10 (full ranking)")
        plot_curves(axes[1][col], {f"{param.split('.')[-1]}={r['value']}": r["history"] for r in sub})
    fig.suptitle(title)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="ml-1m")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--model", default="bert4rec")
    p.add_argument("--minutes", type=float, default=4.0, help="training budget per value")
    p.add_argument("--param", action="append", required=True, help="section.field=v1,v2,... (repeatable)")
    p.add_argument("--name", default=None, help="results name (default: <dataset>_<model>)")
    p.add_argument("--set", dest="sets", action="append", default=[], help="base config override")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    overrides = option_overrides(args.sets, args.data_dir, args.minutes)
    base = build_config(args.preset, overrides).for_model(args.model)
    prepared = prepare(base)
    name = args.name or f"{base.data.dataset}_{args.model}"

    rows: list[dict[str, Any]] = []
    done: dict[str, dict[str, Any]] = {}  # config JSON -> its row: a value equal to the base runs once
    for text in args.param:
        key, values = _parse_param(text)
        for value in values:
            cfg = build_config(args.preset, deep_merge(overrides, parse_overrides([f"{key}={value}"])))
            cfg = cfg.for_model(args.model)
            config_key = cfg.model_dump_json()
            if config_key in done:
                first = done[config_key]
                result = {**first, "same_run_as": f"{first['param']}={first['value']}"}
            else:
                with tempfile.TemporaryDirectory() as run_dir:
                    fit = fit_transformer(prepared.split, cfg, Path(run_dir), progress=False)
                result = {
                    "best_val_ndcg@10": round(fit.best_val_ndcg10 or 0.0, 5),
                    "epochs": fit.epochs,
                    "train_seconds": round(fit.train_seconds, 1),
                    "history": fit.history,
                }
            row = {
                "param": key,
                "value": json.loads(value) if value.replace(".", "", 1).isdigit() else value,
                **result,
            }
            done.setdefault(config_key, row)
            print(f"{key}={value}: best val ndcg@10 {row['best_val_ndcg@10']} in {row['epochs']} epochs")
            rows.append(row)

    meta = run_metadata(
        base.model_dump(mode="json"), base.train.seed, prepared.split.fingerprint, prepared.stats
    )
    out = {
        "benchmark": "sweep",
        "model": args.model,
        "dataset": base.data.dataset,
        "minutes_per_value": args.minutes,
        "rows": rows,
        "config": base.model_dump(mode="json"),
        "run": meta,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / f"sweep_{name}.json", json.dumps(out, indent=2) + "\n")
    lines = [
        f"{args.model} on {base.data.dataset}: one hyperparameter at a time, {args.minutes:g} min of "
        f"training each ({base.train.num_threads or 'default'} CPU threads), best validation NDCG@10 "
        "(full ranking over all items).",
        "",
        "| parameter | value | best val NDCG@10 | epochs | train s |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['param']} | {r['value']} | {r['best_val_ndcg@10']:.4f} | {r['epochs']} "
        f"| {r['train_seconds']}{_same_run_note(r)} |"
        for r in rows
    ]
    atomic_write_text(RESULTS / f"sweep_{name}.md", "\n".join(lines) + "\n")
    _plot(
        rows,
        f"{args.model} on {base.data.dataset} ({args.minutes:g} min per value)",
        RESULTS / f"sweep_{name}.png",
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
