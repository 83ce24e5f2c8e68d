"""Benchmark: what makes a BERT4Rec / SASRec training step fast on CPU (an ablation, side by side).

Each variant trains the same model on real ML-1M training windows (forward, backward, AdamW step)
for a number of steps. Variants are run in interleaved rounds (A B C ... A B C ...) so that noise
from other processes on the machine hits all of them alike; the median ms/step per variant and its
ratio to the first (paper-style) variant are reported. Writes benchmarks/results/train-speed/train_speed.json
and train_speed.md.

    python benchmarks/train_speed.py --data-dir ../shared/data/ml-1m --steps 6 --rounds 3

Variants (cumulative, each adds one change to the previous one):
  paper          windows padded to max_len, attention dropout 0.1, scores every position
  no_attn_drop   attention dropout off (its random mask is expensive on CPU)
  masked_only    the output layer scores only the masked (labelled) positions
  bucketed       length-bucketed batches: each batch padded to its own longest window
  chunked        the full softmax fused with the output layer, chunk by chunk, never holding the
                 (positions x items) logits (bert4rec.training.chunked_softmax; what training uses)
  threads_1      the same with 1 thread instead of 2 (shows the thread setting's effect)
and for SASRec (every position is labelled, so the output layer dominates): paper (padded),
bucketed, chunked, and sampled_512 (sampled softmax with 512 popularity negatives instead of the
full softmax: a different loss, so its accuracy is compared in the accuracy runs, not here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bert4rec.config import ExperimentConfig, build_config, parse_overrides
from bert4rec.evaluation.results import run_metadata
from bert4rec.io import atomic_write_text
from bert4rec.models import build_transformer
from bert4rec.models.transformer import SequenceTransformer
from bert4rec.pipeline import prepare
from bert4rec.training.fit import make_negative_sampler, make_train_loader
from bert4rec.training.losses import plain_full_loss, training_loss

# results are grouped by study: benchmarks/results/<study>/ (index: docs/benchmarks/index.md)
RESULTS = Path(__file__).resolve().parent / "results" / "train-speed"


def _batches(loader: DataLoader, n: int, pad_to: int | None) -> list[dict[str, torch.Tensor]]:
    out = []
    for batch in loader:
        if pad_to is not None and batch["input_ids"].size(1) < pad_to:
            extra = pad_to - batch["input_ids"].size(1)
            batch = {
                k: F.pad(v, (extra, 0)) if v.dim() == 2 else v for k, v in batch.items()
            }  # left padding, like the collators
        out.append(batch)
        if len(out) == n:
            break
    return out


def _all_positions_loss(model: SequenceTransformer, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Paper-style output: score every position, then keep the labelled ones for the loss."""
    hidden = model(batch["input_ids"])
    logits = model.logits(hidden)  # (B, L, n_items + 1)
    labels = batch["labels"]
    return F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), ignore_index=0)


def _variant_step(cfg: ExperimentConfig, split: Any, output: str):
    """output: 'all' (score every position), 'masked' (plain full softmax over the labelled
    positions), 'chunked' (the fused chunked full softmax), 'sampled' (sampled softmax)."""
    model = build_transformer(cfg.model_type, cfg.model, split.n_items)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sampler = make_negative_sampler(split, cfg) if output == "sampled" else None

    def step(batch: dict[str, torch.Tensor]) -> None:
        if output == "all":
            loss = _all_positions_loss(model, batch)
        elif output == "masked":
            loss = plain_full_loss(model, batch["input_ids"], batch["labels"])
        else:
            negatives = sampler.sample() if sampler is not None else None
            loss = training_loss(model, batch["input_ids"], batch["labels"], negatives=negatives)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="ml-1m")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--steps", type=int, default=6, help="steps per variant per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", dest="sets", action="append", default=[])
    args = p.parse_args(argv)

    overrides: dict[str, Any] = parse_overrides(args.sets)
    if args.data_dir:
        overrides.setdefault("data", {})["data_dir"] = str(args.data_dir)
    base = build_config(args.preset, overrides)
    prepared = prepare(base)
    split = prepared.split
    max_len = base.model.max_len

    def cfg_for(model_type: str, attn_drop: float, bucket: bool, output: str) -> ExperimentConfig:
        train = {"bucket_by_length": bucket}
        if output == "sampled":
            train |= {"loss": "sampled", "n_negatives_train": 512, "negative_sampling": "popularity"}
        return base.model_copy(
            update={
                "model_type": model_type,
                "model": base.model.model_copy(update={"attention_dropout": attn_drop}),
                "train": base.train.model_copy(update=train),
            }
        )

    # (name, model type, attention dropout, output layer, bucketed, threads)
    plan = [
        ("bert4rec/paper", "bert4rec", 0.1, "all", False, args.threads),
        ("bert4rec/no_attn_drop", "bert4rec", 0.0, "all", False, args.threads),
        ("bert4rec/masked_only", "bert4rec", 0.0, "masked", False, args.threads),
        ("bert4rec/bucketed", "bert4rec", 0.0, "masked", True, args.threads),
        ("bert4rec/chunked", "bert4rec", 0.0, "chunked", True, args.threads),
        ("bert4rec/threads_1", "bert4rec", 0.0, "chunked", True, 1),
        ("sasrec/paper", "sasrec", 0.0, "masked", False, args.threads),
        ("sasrec/bucketed", "sasrec", 0.0, "masked", True, args.threads),
        ("sasrec/chunked", "sasrec", 0.0, "chunked", True, args.threads),
        ("sasrec/sampled_512", "sasrec", 0.0, "sampled", True, args.threads),
    ]
    n_batches = args.steps * args.rounds + 1
    variants = []
    for name, model_type, attn_drop, output, bucket, threads in plan:
        cfg = cfg_for(model_type, attn_drop, bucket, output)
        loader = make_train_loader(split, cfg)
        batches = _batches(loader, n_batches, None if bucket else max_len)  # model input length
        torch.manual_seed(0)
        step = _variant_step(cfg, split, output)
        sequences = sum(b["input_ids"].size(0) for b in batches[1:]) / (n_batches - 1)
        padded_len = sum(b["input_ids"].size(1) for b in batches[1:]) / (n_batches - 1)
        variants.append(
            {"name": name, "step": step, "batches": batches, "threads": threads, "times": [],
             "batch_size": sequences, "avg_padded_len": padded_len}
        )  # fmt: skip

    for v in variants:  # warm-up step (allocations, thread pools)
        torch.set_num_threads(v["threads"])
        v["step"](v["batches"][0])
    for r in range(args.rounds):
        for v in variants:
            torch.set_num_threads(v["threads"])
            for i in range(args.steps):
                batch = v["batches"][1 + r * args.steps + i]
                start = time.perf_counter()
                v["step"](batch)
                v["times"].append(time.perf_counter() - start)

    rows = []
    reference: dict[str, float] = {}
    for v in variants:
        ms = 1000 * statistics.median(v["times"])
        family = v["name"].split("/")[0]
        reference.setdefault(family, ms)
        rows.append(
            {
                "variant": v["name"],
                "ms_per_step": round(ms, 1),
                "sequences_per_second": round(v["batch_size"] / (ms / 1000), 1),
                "speedup_vs_paper": round(reference[family] / ms, 2),
                "avg_padded_len": round(v["avg_padded_len"], 1),
                "threads": v["threads"],
            }
        )
    meta = run_metadata(base.model_dump(mode="json"), base.train.seed, split.fingerprint, split.stats)
    out = {
        "benchmark": "train_speed",
        "dataset": base.data.dataset,
        "steps_per_variant": args.steps * args.rounds,
        "batch_size": base.train.batch_size,
        "max_len": max_len,
        "rows": rows,
        "run": meta,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / "train_speed.json", json.dumps(out, indent=2) + "\n")
    header = "| variant | ms/step | sequences/s | speed-up vs paper | avg padded length | threads |"
    lines = [
        f"Training step on {base.data.dataset} (batch {base.train.batch_size}, max_len {max_len}, "
        f"hidden {base.model.hidden_size}); median of {args.steps * args.rounds} steps per variant, "
        "variants interleaved. Each BERT4Rec row adds one change to the row above.",
        "",
        header,
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['variant']} | {r['ms_per_step']} | {r['sequences_per_second']} | {r['speedup_vs_paper']}x "
        f"| {r['avg_padded_len']} | {r['threads']} |"
        for r in rows
    ]
    atomic_write_text(RESULTS / "train_speed.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
