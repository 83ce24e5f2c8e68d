"""Benchmark: train and evaluate several models on one leave-one-out split, write results files.

Writes `benchmarks/results/<study>/<name>_<model>.json` (one record per model run, with metrics
(full and sampled), train seconds, throughput, per-epoch validation curve, config, versions, data
fingerprint) and `benchmarks/results/<study>/<name>.md` (the table). The study folder is `--study`;
without it, the folder that already holds `<name>.md` (so a re-run joins its earlier records), else
a new folder named after `<name>`.

    python benchmarks/compare_models.py --preset ml-1m --data-dir ../shared/data/ml-1m \
        --models bert4rec,sasrec,popularity,item_knn,mf --minutes 10 --name ml-1m-40min --study ml-1m-headline
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from bert4rec.config import build_config, deep_merge, option_overrides, parse_overrides
from bert4rec.evaluation.results import markdown_table, write_records
from bert4rec.io import atomic_write_text
from bert4rec.pipeline import prepare, train_and_evaluate

# results are grouped by study: benchmarks/results/<study>/ (index: docs/benchmarks/index.md)
RESULTS = Path(__file__).resolve().parent / "results"


def study_dir(name: str, study: str | None, root: Path = RESULTS) -> Path:
    """The folder for results `name`: `root/study`, else the study folder that already holds
    `name.md` (a re-run joins its earlier records), else a new folder `root/name`."""
    if study:
        if "/" in study or "\\" in study or study in (".", ".."):
            raise SystemExit(f"--study {study!r}: expected one folder name (e.g. ml-1m-headline)")
        return root / study
    existing = sorted(root.glob(f"*/{name}.md"))
    return existing[0].parent if existing else root / name


def _all_records(folder: Path, name: str) -> list[dict[str, Any]]:
    order = {m: i for i, m in enumerate(["bert4rec", "sasrec", "popularity", "item_knn", "mf"])}
    records = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{name}_*.json"))]
    records = [r for r in records if r.get("dataset") and isinstance(r.get("metrics"), dict)]
    return sorted(records, key=lambda r: order.get(r["model"], len(order)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="ml-1m")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--models", default="bert4rec,sasrec,popularity,item_knn,mf")
    p.add_argument("--minutes", type=float, default=None, help="training budget per Transformer model")
    p.add_argument("--name", default=None, help="results file prefix (default: the dataset name)")
    p.add_argument(
        "--study",
        default=None,
        help="folder under benchmarks/results (default: the one holding <name>.md, else <name>)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    p.add_argument(
        "--set", dest="sets", action="append", default=[], help="config override section.field=value"
    )
    p.add_argument(
        "--model-set",
        dest="model_sets",
        action="append",
        default=[],
        help="override for one model only, model:section.field=value (e.g. bert4rec:train.lr=0.004)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    overrides = option_overrides(args.sets, args.data_dir, args.minutes)
    cfg = build_config(args.preset, overrides)
    prepared = prepare(cfg)
    print(f"prepared {cfg.data.dataset} in {prepared.seconds:.2f} s: {prepared.stats}")
    name = args.name or cfg.data.dataset
    results = study_dir(name, args.study)
    per_model: dict[str, list[str]] = {}
    for item in args.model_sets:
        model, sep, setting = item.partition(":")
        if not sep:
            p.error(f"--model-set {item!r}: expected model:section.field=value")
        per_model.setdefault(model.strip(), []).append(setting)
    records = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        model_cfg = cfg
        if model in per_model:
            model_cfg = build_config(args.preset, deep_merge(overrides, parse_overrides(per_model[model])))
        run = train_and_evaluate(model, model_cfg, prepared, args.out / name, progress=False)
        rec = run.record
        rec["prepare_seconds"] = round(prepared.seconds, 3)
        if rec.get("epochs"):
            # throughput: training windows seen per second of training
            from bert4rec.training.fit import make_train_loader

            n_windows = len(
                make_train_loader(prepared.split, model_cfg.for_model(model)).dataset  # per_model applied
            )
            rec["train_sequences_per_second"] = round(
                n_windows * rec["epochs"] / max(rec["train_seconds"], 1e-9), 1
            )
        full = rec["metrics"]["full"]
        print(
            f"{model}: full ndcg@10={full['ndcg@10']:.4f} hr@10={full['hr@10']:.4f} "
            f"train {rec['train_seconds']:.0f}s"
        )
        records.append(rec)
    write_records(records, results, name)
    # the table and curves cover every model of this benchmark name, also those of earlier runs
    # (e.g. one model re-run with other settings): their records are in <study>/<name>_<model>.json
    records = _all_records(results, name)
    table = results / f"{name}.md"
    atomic_write_text(table, markdown_table(records))
    curves = {r["model"]: r["history"] for r in records if r.get("history")}
    if curves:
        from plots import time_to_quality_png

        png = results / f"{name}_curves.png"
        time_to_quality_png(curves, f"{name}: validation NDCG@10 vs training time", png)
        print(f"time-to-quality curves: {png}")
    print(table.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
