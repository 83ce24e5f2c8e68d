"""Benchmark: how fast BERT4Rec and SASRec leave their initial plateau, per optimiser step.

A newcomer's first run (scripts/quickstart.sh) trains each Transformer for a few minutes. On a
loaded machine that was under one epoch, and both models were still on the plateau they start on,
below the popularity baseline. This script measures the levers against that, per optimiser STEP
(wall-clock time on a shared machine says more about the other processes than about the model):
each variant trains with the library's own loss, optimiser groups, learning-rate schedule and
gradient clipping (`SequenceModule`), and every `--every` steps the full-ranking validation
NDCG@10 of a fixed subset of users is recorded with the step, the training seconds so far
(`elapsed_s`, validation excluded) and the wall seconds.

Variants (per model, the ml-1m preset's settings otherwise):
  baseline        output bias at zero (uniform start), the preset's warmup (100 steps)
  logpop          output bias initialised from the log-popularity of the training items
  logpop_warm20   the same with a 20-step warmup
  baseline_warm20 zero bias with a 20-step warmup (separates the two levers)

Writes benchmarks/results/first-run/first_run_<dataset>.json and .md.

    python benchmarks/first_run.py --data-dir ../shared/data/ml-1m --steps 600 --every 50
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bert4rec.config import ExperimentConfig, build_config, parse_overrides
from bert4rec.evaluation.evaluator import Evaluator
from bert4rec.evaluation.results import atomic_write_text, run_metadata
from bert4rec.models import build_transformer
from bert4rec.pipeline import prepare
from bert4rec.training.fit import ValidationNDCG, make_train_loader, validation_users
from bert4rec.training.losses import training_loss
from bert4rec.training.module import SequenceModule

# results are grouped by study: benchmarks/results/<study>/ (index: docs/benchmarks/index.md)
RESULTS = Path(__file__).resolve().parent / "results" / "first-run"

VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {"output_bias_init": "zeros"},
    "logpop": {"output_bias_init": "log_popularity"},
    "logpop_warm20": {"output_bias_init": "log_popularity", "warmup_steps": 20},
    "baseline_warm20": {"output_bias_init": "zeros", "warmup_steps": 20},
}


def train_curve(
    cfg: ExperimentConfig,
    split: Any,
    steps: int,
    every: int,
    val_users: np.ndarray,
    on_record: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train `cfg` for `steps` optimiser steps; validation NDCG@10 on `val_users` at step 0 and
    every `every` steps: [{step, epoch, elapsed_s, wall_s, val_ndcg@10, train_loss}], passed to
    `on_record` after each validation."""
    tc = cfg.train
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)
    model = build_transformer(cfg.model_type, cfg.model, split.n_items, split.vocab.n_users)
    if tc.output_bias_init == "log_popularity":
        model.init_output_bias(torch.from_numpy(split.item_popularity()))
    loader = make_train_loader(split, cfg)
    # the schedule a real run gets: cosine over all epochs (a time budget shortens it per epoch)
    module = SequenceModule(model, tc, total_steps=tc.epochs * len(loader))
    opt_cfg = module.configure_optimizers()
    optimizer, scheduler = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    validate = ValidationNDCG(Evaluator(split, cfg.eval), val_users)

    history: list[dict[str, Any]] = []
    train_seconds, wall_start, losses = 0.0, time.perf_counter(), []

    def record(step: int, epoch: int) -> None:
        model.eval()
        ndcg = validate(model)
        model.train()
        history.append(
            {
                "step": step,
                "epoch": epoch,
                "elapsed_s": round(train_seconds, 1),
                "wall_s": round(time.perf_counter() - wall_start, 1),
                "val_ndcg@10": round(ndcg, 5),
                "train_loss": round(float(np.mean(losses)), 4) if losses else None,
            }
        )
        losses.clear()
        if on_record is not None:
            on_record(history)
        print(
            f"  {cfg.model_type} step {step:5d} ep {epoch} train {train_seconds:7.1f}s  ndcg@10 {ndcg:.4f}",
            flush=True,
        )

    record(0, 0)
    step, epoch = 0, 0
    model.train()
    while step < steps:
        for batch in loader:
            start = time.perf_counter()
            users = batch["users"] if model.user_emb is not None else None
            loss = training_loss(model, batch["input_ids"], batch["labels"], users)
            objective = module._weighted(loss, batch["labels"])  # train.loss_weighting
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            if tc.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            scheduler.step()
            train_seconds += time.perf_counter() - start
            losses.append(float(loss.detach()))
            step += 1
            if step % every == 0 or step == steps:
                record(step, epoch)
            if step >= steps:
                break
        epoch += 1
    return history


def first_step_at(history: list[dict[str, Any]], threshold: float) -> int | None:
    """The first recorded step whose validation NDCG@10 reaches `threshold` (None: never)."""
    return next((r["step"] for r in history if r["val_ndcg@10"] >= threshold), None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="ml-1m")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--models", default="bert4rec,sasrec")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--steps", type=int, default=600, help="optimiser steps per variant")
    p.add_argument("--every", type=int, default=50, help="validate every this many steps")
    p.add_argument("--val-users", type=int, default=1000, help="fixed validation subset")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reference", type=float, action="append", default=[],
                   help="NDCG@10 levels to report the first step reaching (e.g. the baselines')")  # fmt: skip
    p.add_argument("--machine-note", default="", help="what else ran on the machine (recorded)")
    p.add_argument("--set", dest="sets", action="append", default=[])
    p.add_argument("--table-only", action="store_true", help="rewrite the .md from the JSON, train nothing")
    args = p.parse_args(argv)
    if args.table_only:
        dataset = build_config(args.preset).data.dataset
        json_path = RESULTS / f"first_run_{dataset}.json"
        write_table(json.loads(json_path.read_text()), json_path.with_suffix(".md"))
        return 0

    torch.set_num_threads(args.threads)
    overrides: dict[str, Any] = parse_overrides(args.sets)
    if args.data_dir:
        overrides.setdefault("data", {})["data_dir"] = str(args.data_dir)
    base = build_config(args.preset, overrides)
    split = prepare(base).split
    val_users = validation_users(split, args.val_users, base.train.seed)
    dataset = base.data.dataset
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS / f"first_run_{dataset}.json", RESULTS / f"first_run_{dataset}.md"
    previous = json.loads(json_path.read_text()) if json_path.exists() else {}
    curves: dict[str, Any] = dict(previous.get("curves", {}))  # a partial rerun keeps the others

    for model_type in args.models.split(","):
        for name in args.variants.split(","):
            cfg = base.for_model(model_type)  # type: ignore[arg-type]
            cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=VARIANTS[name])})
            print(f"{model_type}/{name}", flush=True)
            key = f"{model_type}/{name}"

            def save(history: list[dict[str, Any]], key: str = key, cfg: ExperimentConfig = cfg) -> None:
                # after every validation: a run stopped early (a slow, shared machine) keeps its curve
                curves[key] = {
                    "model_type": cfg.model_type,
                    "variant": key.split("/")[1],
                    "changes": VARIANTS[key.split("/")[1]],
                    "config": cfg.model_dump(mode="json"),
                    "history": history,
                    "load_average": os.getloadavg(),
                }
                write(base, split, args, curves, json_path, md_path)

            train_curve(cfg, split, args.steps, args.every, val_users, on_record=save)
    return 0


def write(
    base: ExperimentConfig, split: Any, args: argparse.Namespace, curves: dict[str, Any],
    json_path: Path, md_path: Path,
) -> None:  # fmt: skip
    out = {
        "benchmark": "first_run",
        "dataset": base.data.dataset,
        "val_users": args.val_users,
        "every": args.every,
        "threads": args.threads,
        "machine_note": args.machine_note,
        "references": args.reference,
        "curves": curves,
        "run": run_metadata(base.model_dump(mode="json"), base.train.seed, split.fingerprint, split.stats),
    }
    # variants may run as parallel processes (one thread each): merge under a lock, newest wins
    folder = os.open(json_path.parent, os.O_RDONLY)  # the study folder itself is the lock
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        if json_path.exists():
            curves = {**json.loads(json_path.read_text()).get("curves", {}), **curves}
            out["curves"] = curves
        atomic_write_text(json_path, json.dumps(out, indent=2) + "\n")
    finally:
        os.close(folder)
    write_table(out, md_path)


def write_table(out: dict[str, Any], md_path: Path) -> None:
    """The markdown table of a results JSON: NDCG@10 at fixed steps, and the first step reaching
    each reference level (e.g. the baselines' test NDCG@10)."""
    curves = dict(sorted(out["curves"].items()))
    steps = sorted({r["step"] for c in curves.values() for r in c["history"]})
    shown = [s for s in steps if s in (0, 50, 100, 150, 200, 250, 300, 350, 400, 500, 600, 800, 1000)]
    lines = [
        f"Validation NDCG@10 (full ranking, {out['val_users']} fixed validation users) against optimiser "
        f"steps on {out['dataset']}, {out['threads']} thread(s) per run, the ml-1m preset's settings per "
        "model otherwise; a blank cell: the run was stopped before that step.",
        f"Machine: {out['machine_note'] or 'not recorded'}. Training seconds are context only (a shared "
        "machine).",
        "",
        "| model/variant | " + " | ".join(f"step {s}" for s in shown) + " | steps | train s |",
        "|---|" + "---:|" * (len(shown) + 2),
    ]
    for key, curve in curves.items():
        by_step = {r["step"]: r["val_ndcg@10"] for r in curve["history"]}
        cells = [f"{by_step[s]:.4f}" if s in by_step else "" for s in shown]
        last = curve["history"][-1]
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {last['step']} | {last['elapsed_s']} |")
    references = out.get("references") or []
    if references:
        lines += ["", "| model/variant | " + " | ".join(f"first step >= {t}" for t in references) + " |",
                  "|---|" + "---:|" * len(references)]  # fmt: skip
        for key, curve in curves.items():
            cells = [str(first_step_at(curve["history"], t) or "-") for t in references]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    atomic_write_text(md_path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
