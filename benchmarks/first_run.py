"""Benchmark: how fast BERT4Rec and SASRec leave their initial plateau, per optimiser step.

A newcomer's first run (scripts/quickstart.sh) trains each Transformer for a few minutes. On a
loaded machine that was under one epoch, and both models were still on the plateau they start on,
below the popularity baseline. This script measures the levers against that, per optimiser STEP
(wall-clock time on a shared machine says more about the other processes than about the model):
each variant trains with the library's own loss, optimiser groups, learning-rate schedule and
gradient clipping (`SequenceModule`), and every `--every` steps the full-ranking validation
NDCG@10 of a fixed subset of users is recorded with the step, the training seconds so far
(`elapsed_s`, validation excluded) and the wall seconds.

Variants (per model, the ml-1m preset's settings otherwise; "model.x" changes a model field):
  baseline        output bias at zero (uniform start), the preset's warmup (100 steps)
  logpop          output bias initialised from the log-popularity of the training items (the
                  ml-1m preset since the first-run study: the "preset" row of the 6-minute study)
  logpop_warm20   the same with a 20-step warmup
  baseline_warm20 zero bias with a 20-step warmup (separates the two levers)
  and the 6-minute study's single changes to the preset (lr6e-3, dropout0, nobucket, ...: VARIANTS)

Writes benchmarks/results/first-run/first_run_<dataset>[_<name>].json and .md.

    python benchmarks/first_run.py --data-dir ../shared/data/ml-1m --steps 600 --every 50

The 6-minute study (issue 18): a fixed optimiser-step budget equal to what 6 quiet minutes held,
the cosine schedule fitted to it (`--schedule-steps`, as a time budget fits it), validation on all
users at the 2- and 6-minute-equivalent steps (`--at`, `--val-users 0`):

    python benchmarks/first_run.py --data-dir ../shared/data/ml-1m --models bert4rec --threads 1 \
        --name 6min-steps --steps 5200 --schedule-steps 5200 --every 100000 --at 1740,3480 \
        --val-users 0 --variants logpop,dropout0
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bert4rec.config import ExperimentConfig, build_config, parse_overrides
from bert4rec.evaluation.evaluator import Evaluator
from bert4rec.evaluation.results import atomic_write_text, run_metadata
from bert4rec.models import build_transformer
from bert4rec.pipeline import prepare
from bert4rec.training.fit import ValidationNDCG, init_starting_weights, make_train_loader, validation_users
from bert4rec.training.losses import training_loss
from bert4rec.training.module import SequenceModule

# results are grouped by study: benchmarks/results/<study>/ (index: docs/benchmarks/index.md)
RESULTS = Path(__file__).resolve().parent / "results" / "first-run"

VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {"output_bias_init": "zeros"},
    "logpop": {"output_bias_init": "log_popularity"},
    "logpop_warm20": {"output_bias_init": "log_popularity", "warmup_steps": 20},
    "baseline_warm20": {"output_bias_init": "zeros", "warmup_steps": 20},
    # the 6-minute study: one change each to the ml-1m preset (which starts at log-popularity)
    "lr6e-3": {"lr": 6e-3},
    "lr8e-3": {"lr": 8e-3},
    "dropout0": {"model.dropout": 0.0},
    "nobucket": {"bucket_by_length": False},
    "lastitem0.3": {"last_item_mask_prob": 0.3},
    "mask0.3": {"mask_prob": 0.3},
    "warm300": {"warmup_steps": 300},
    "finallr0": {"final_lr_ratio": 0.0},
    # combinations with the change that paid most (dropout off)
    "dropout0_nobucket": {"model.dropout": 0.0, "bucket_by_length": False},
    "dropout0_finallr0": {"model.dropout": 0.0, "final_lr_ratio": 0.0},
    "dropout0_batch64": {"model.dropout": 0.0, "batch_size": 64},
    "dropout0_lr6e-3": {"model.dropout": 0.0, "lr": 6e-3},
    "dropout0_nobucket_finallr0": {"model.dropout": 0.0, "bucket_by_length": False, "final_lr_ratio": 0.0},
    "dropout0_nobucket_lr6e-3": {"model.dropout": 0.0, "bucket_by_length": False, "lr": 6e-3},
    "dropout0_nobucket_lastitem0.3": {
        "model.dropout": 0.0,
        "bucket_by_length": False,
        "last_item_mask_prob": 0.3,
    },
    "dropout0_nobucket_mf": {"model.dropout": 0.0, "bucket_by_length": False, "item_embedding_init": "mf"},
    "batch64": {"batch_size": 64},
    "batch256": {"batch_size": 256},
}


def apply_variant(cfg: ExperimentConfig, changes: dict[str, Any]) -> ExperimentConfig:
    """`cfg` with a variant's changes: "model.<field>" keys change the model, the others train."""
    model = {k.removeprefix("model."): v for k, v in changes.items() if k.startswith("model.")}
    train = {k: v for k, v in changes.items() if not k.startswith("model.")}
    merged = cfg.model_dump(exclude={"per_model"})
    merged["model"].update(model)
    merged["train"].update(train)
    return ExperimentConfig.model_validate(merged)  # validated: a typo in a variant fails here


class Stepper:
    """One variant's model, training loader and optimiser, stepped by hand with the library's loss,
    optimiser groups, schedule and gradient clipping (`SequenceModule`)."""

    def __init__(self, cfg: ExperimentConfig, split: Any, schedule_steps: int | None = None) -> None:
        tc = self.tc = cfg.train
        torch.manual_seed(tc.seed)
        np.random.seed(tc.seed)
        self.model = build_transformer(cfg.model_type, cfg.model, split.n_items, split.vocab.n_users)
        init_starting_weights(self.model, split, cfg)
        self.loader = make_train_loader(split, cfg)
        # the schedule a real run gets: cosine over all epochs, or over `schedule_steps` (what a
        # time budget fits it to)
        self.module = SequenceModule(
            self.model, tc, total_steps=schedule_steps or tc.epochs * len(self.loader)
        )
        opt_cfg = self.module.configure_optimizers()
        self.optimizer, self.scheduler = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
        self.model.train()

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        """One optimiser step on `batch`; returns the batch's loss."""
        model, tc = self.model, self.tc
        users = batch["users"] if model.user_emb is not None else None
        loss = training_loss(model, batch["input_ids"], batch["labels"], users)
        objective = self.module._weighted(loss, batch["labels"])  # train.loss_weighting
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if tc.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """Training batches without end, epoch after epoch."""
        while True:
            yield from self.loader


def train_curve(
    cfg: ExperimentConfig,
    split: Any,
    steps: int,
    every: int,
    val_users: np.ndarray,
    on_record: Callable[[list[dict[str, Any]]], None] | None = None,
    schedule_steps: int | None = None,
    at: frozenset[int] = frozenset(),
) -> list[dict[str, Any]]:
    """Train `cfg` for `steps` optimiser steps; validation NDCG@10 on `val_users` at step 0, every
    `every` steps, at the steps in `at` and at the end: [{step, epoch, elapsed_s, wall_s, val_s,
    val_ndcg@10, train_loss}], passed to `on_record` after each validation. `val_s` is that
    validation's seconds, measured in the same process as the training seconds (`elapsed_s`), so
    their ratio holds on a shared machine. `schedule_steps`: the cosine schedule's length (what a
    time budget fits it to); None: all `epochs` of the config, as a run without a budget."""
    stepper = Stepper(cfg, split, schedule_steps)
    model = stepper.model
    validate = ValidationNDCG(Evaluator(split, cfg.eval), val_users)

    history: list[dict[str, Any]] = []
    train_seconds, wall_start, losses = 0.0, time.perf_counter(), []

    def record(step: int, epoch: int) -> None:
        model.eval()
        val_start = time.perf_counter()
        ndcg = validate(model)
        val_s = time.perf_counter() - val_start
        model.train()
        history.append(
            {
                "step": step,
                "epoch": epoch,
                "elapsed_s": round(train_seconds, 1),
                "wall_s": round(time.perf_counter() - wall_start, 1),
                "val_s": round(val_s, 2),
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
    while step < steps:
        for batch in stepper.loader:
            start = time.perf_counter()
            losses.append(stepper.step(batch))
            train_seconds += time.perf_counter() - start
            step += 1
            if step % every == 0 or step in at or step == steps:
                record(step, epoch)
            if step >= steps:
                break
        epoch += 1
    return history


def step_costs(
    cfgs: dict[str, ExperimentConfig], split: Any, rounds: int, steps: int, val_users: np.ndarray
) -> dict[str, Any]:
    """Seconds per optimiser step of each variant (batch building included), measured side by side:
    `rounds` rounds of `steps` steps per variant in turn (A B C A B C ...), so that the machine's
    other load hits all of them alike; the median over rounds. Also the seconds of one validation
    pass over `val_users` (the first variant's model), timed in every round between the variants'
    steps, and the steps of one training epoch of each variant."""
    steppers = {name: Stepper(cfg, split) for name, cfg in cfgs.items()}
    streams = {name: s.batches() for name, s in steppers.items()}
    first = next(iter(cfgs))
    validate = ValidationNDCG(Evaluator(split, cfgs[first].eval), val_users)
    for name, stepper in steppers.items():  # warm-up, not timed
        stepper.step(next(streams[name]))
    per_step: dict[str, list[float]] = {name: [] for name in cfgs}
    validation: list[float] = []
    for r in range(rounds):
        for name, stepper in steppers.items():
            start = time.perf_counter()
            for _ in range(steps):
                stepper.step(next(streams[name]))
            per_step[name].append((time.perf_counter() - start) / steps)
        model = steppers[first].model
        model.eval()
        start = time.perf_counter()
        validate(model)
        validation.append(time.perf_counter() - start)
        model.train()
        times = ", ".join(f"{n} {v[-1] * 1e3:.0f} ms" for n, v in per_step.items())
        print(f"  round {r + 1}/{rounds}: {times}, validation {validation[-1]:.2f} s", flush=True)
    base = statistics.median(per_step[first])
    return {
        "rounds": rounds,
        "steps_per_round": steps,
        "val_users": len(val_users),
        "validation_s": round(statistics.median(validation), 3),
        "validation_s_per_round": [round(v, 3) for v in validation],
        "variants": {
            name: {
                "changes": VARIANTS[name],
                "s_per_step": round(statistics.median(v), 5),
                "s_per_step_per_round": [round(x, 5) for x in v],
                "ratio_to_first": round(statistics.median(v) / base, 3),
                "steps_per_epoch": len(steppers[name].loader),
            }
            for name, v in per_step.items()
        },
        "load_average": os.getloadavg(),
    }


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
    p.add_argument("--val-users", type=int, default=1000, help="fixed validation subset (0: all users)")
    p.add_argument("--schedule-steps", type=int, help="cosine schedule length (default: all epochs)")
    p.add_argument("--at", default="", help="also validate at these steps (comma-separated)")
    p.add_argument("--name", default="", help="results file suffix: first_run_<dataset>_<name>")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reference", type=float, action="append", default=[],
                   help="NDCG@10 levels to report the first step reaching (e.g. the baselines')")  # fmt: skip
    p.add_argument("--machine-note", default="", help="what else ran on the machine (recorded)")
    p.add_argument("--set", dest="sets", action="append", default=[])
    p.add_argument("--table-only", action="store_true", help="rewrite the .md from the JSON, train nothing")
    p.add_argument("--step-cost", type=int, metavar="ROUNDS",
                   help="instead of curves: seconds per step of the variants side by side, ROUNDS "
                   "rounds of --steps steps each, and one validation pass per round")  # fmt: skip
    args = p.parse_args(argv)
    suffix = f"_{args.name}" if args.name else ""
    if args.table_only:
        dataset = build_config(args.preset).data.dataset
        json_path = RESULTS / f"first_run_{dataset}{suffix}.json"
        write_table(json.loads(json_path.read_text()), json_path.with_suffix(".md"))
        return 0

    torch.set_num_threads(args.threads)
    overrides: dict[str, Any] = parse_overrides(args.sets)
    if args.data_dir:
        overrides.setdefault("data", {})["data_dir"] = str(args.data_dir)
    base = build_config(args.preset, overrides)
    split = prepare(base).split
    val_users = validation_users(split, args.val_users or None, base.train.seed)
    at = frozenset(int(s) for s in args.at.split(",") if s.strip())
    dataset = base.data.dataset
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / f"first_run_{dataset}{suffix}.json"
    md_path = json_path.with_suffix(".md")
    if args.step_cost:
        model_type = args.models.split(",")[0]
        cfgs = {n: apply_variant(base.for_model(model_type), VARIANTS[n]) for n in args.variants.split(",")}  # type: ignore[arg-type]
        costs = step_costs(cfgs, split, args.step_cost, args.steps, val_users)
        out = {
            "benchmark": "first_run_step_cost",
            "dataset": dataset,
            "model_type": model_type,
            "threads": args.threads,
            "machine_note": args.machine_note,
            **costs,
            "configs": {n: c.model_dump(mode="json") for n, c in cfgs.items()},
            "run": run_metadata(
                base.model_dump(mode="json"), base.train.seed, split.fingerprint, split.stats
            ),
        }
        atomic_write_text(json_path, json.dumps(out, indent=2) + "\n")
        write_cost_table(out, md_path)
        return 0
    # this process's curves only: the file's others (a partial rerun, parallel processes) are kept
    # by `write`, which merges the file's current curves with these under a lock
    curves: dict[str, Any] = {}

    for model_type in args.models.split(","):
        for name in args.variants.split(","):
            cfg = apply_variant(base.for_model(model_type), VARIANTS[name])  # type: ignore[arg-type]
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

            train_curve(
                cfg, split, args.steps, args.every, val_users, on_record=save,
                schedule_steps=args.schedule_steps, at=at,
            )  # fmt: skip
    return 0


def write(
    base: ExperimentConfig, split: Any, args: argparse.Namespace, curves: dict[str, Any],
    json_path: Path, md_path: Path,
) -> None:  # fmt: skip
    out = {
        "benchmark": "first_run",
        "dataset": base.data.dataset,
        "val_users": args.val_users or len(split.users("val")),
        "every": args.every,
        "at": sorted(int(s) for s in args.at.split(",") if s.strip()),
        "schedule_steps": args.schedule_steps,
        "threads": args.threads,
        "machine_note": args.machine_note,
        "references": args.reference,
        "curves": curves,
        "run": run_metadata(base.model_dump(mode="json"), base.train.seed, split.fingerprint, split.stats),
    }
    # variants may run as parallel processes (one thread each): under a lock, the file's curves
    # with this process's own replacing theirs (only its own: another process's curves in the file
    # are newer than any copy this one could hold)
    folder = os.open(json_path.parent, os.O_RDONLY)  # the study folder itself is the lock
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        if json_path.exists():
            out["curves"] = {**json.loads(json_path.read_text()).get("curves", {}), **curves}
        atomic_write_text(json_path, json.dumps(out, indent=2) + "\n")
    finally:
        os.close(folder)
    write_table(out, md_path)


def write_table(out: dict[str, Any], md_path: Path) -> None:
    """The markdown table of a results JSON: NDCG@10 at fixed steps, and the first step reaching
    each reference level (e.g. the baselines' test NDCG@10)."""
    curves = dict(sorted(out["curves"].items()))
    steps = sorted({r["step"] for c in curves.values() for r in c["history"]})
    marks = {0, 50, 100, 150, 200, 250, 300, 350, 400, 500, 600, 800, 1000, *out.get("at", [])}
    marks |= {c["history"][-1]["step"] for c in curves.values()}  # each curve's last point
    if out["every"] >= 100:  # a long run's regular points (short runs' tables keep the fixed steps)
        marks |= {s for s in steps if s % out["every"] == 0}
    shown = [s for s in steps if s in marks]
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
    notes = [f"- {key}: {c['history_note']}" for key, c in curves.items() if c.get("history_note")]
    if notes:
        lines += ["", *notes]
    references = out.get("references") or []
    if references:
        lines += ["", "| model/variant | " + " | ".join(f"first step >= {t}" for t in references) + " |",
                  "|---|" + "---:|" * len(references)]  # fmt: skip
        for key, curve in curves.items():
            cells = [str(first_step_at(curve["history"], t) or "-") for t in references]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    atomic_write_text(md_path, "\n".join(lines) + "\n")


def write_cost_table(out: dict[str, Any], md_path: Path) -> None:
    """The markdown table of a --step-cost results JSON."""
    first = next(iter(out["variants"]))
    variants = out["variants"]
    epoch_s = variants[first]["s_per_step"] * variants[first]["steps_per_epoch"]
    lines = [
        f"Seconds per optimiser step of {out['model_type']} on {out['dataset']} "
        f"({out['threads']} thread(s)), "
        f"variants side by side: {out['rounds']} rounds of {out['steps_per_round']} steps each in turn, "
        "median over rounds; batch building included. One validation pass over "
        f"{out['val_users']} users ({first}'s model) timed in every round.",
        f"Machine: {out['machine_note'] or 'not recorded'}.",
        "",
        "| variant | changes | s/step | ratio to " + first + " | steps/epoch |",
        "|---|---|---:|---:|---:|",
    ]
    for name, v in variants.items():
        changes = ", ".join(f"{k}={x}" for k, x in v["changes"].items())
        lines.append(
            f"| {name} | {changes} | {v['s_per_step']:.4f} | {v['ratio_to_first']:.2f} "
            f"| {v['steps_per_epoch']} |"
        )
    lines += [
        "",
        f"Validation pass: {out['validation_s']:.2f} s (median; per round: "
        f"{', '.join(str(x) for x in out['validation_s_per_round'])}), "
        f"= {out['validation_s'] / variants[first]['s_per_step']:.0f} steps of {first}, "
        f"{out['validation_s'] / (epoch_s + out['validation_s']):.1%} of an epoch that validates at its end.",
    ]
    atomic_write_text(md_path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
