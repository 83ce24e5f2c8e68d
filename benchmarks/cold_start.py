"""Benchmark: cold-start items, ID-only vs content-fused (MiniLM title + metadata) Transformer.

A seeded random share of the catalogue (`--share`, default 10%) is held out of training: its
interactions are removed from every training sequence and validation target (so it is in no training,
validation or test input; `bert4rec.data.cold_start`), while the items stay in the catalogue with
their metadata. The ID-only model and the fused model (`model.content_fusion`) are trained with the
same config, seed and budget (`--minutes` each) and evaluated with the shared Evaluator (full ranking
+ sampled negatives) on two groups of test users: "cold" (test target is a held-out item) and "warm"
(all other test users).

Each model is evaluated twice:
  new_items   the held-out items treated as items added after training (`reset_items`: ID vectors
              zeroed, output bias = mean of the other items), the realistic cold-start case; an
              ID-only model then gives every held-out item the same score (ties count against the
              target), a fused model still has their text part
  as_trained  the weights as trained; the held-out items were never-positive items in the training
              softmax, which pushes them down in both models

Writes benchmarks/results/cold-start/cold_start_<name>.json and .md (name: the dataset unless --name).

    python benchmarks/cold_start.py --preset ml-1m --data-dir ../shared/data/ml-1m --minutes 10
    python benchmarks/cold_start.py --preset demo --minutes 0.3        # smoke test, generated data
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bert4rec.config import ExperimentConfig, build_config, option_overrides
from bert4rec.data.cold_start import choose_cold_items, cold_users, hold_out_items
from bert4rec.data.sequences import SequenceSplit
from bert4rec.evaluation.evaluator import Evaluator
from bert4rec.evaluation.results import run_metadata
from bert4rec.inference.content import MINILM_NAME
from bert4rec.inference.scoring import TransformerScorer
from bert4rec.models.transformer import SequenceTransformer
from bert4rec.pipeline import content_vectors, dataset_name, prepare
from bert4rec.training.fit import fit_transformer

# results are grouped by study: benchmarks/results/<study>/ (index: docs/benchmarks/index.md)
RESULTS = Path(__file__).resolve().parent / "results" / "cold-start"
VARIANTS = ("id_only", "fused")
TREATMENTS = ("new_items", "as_trained")
GROUPS = ("cold", "warm")
# (mode, metric, column label) of the markdown table
COLUMNS = (
    ("full", "hr@10", "HR@10"),
    ("full", "ndcg@10", "NDCG@10"),
    ("full", "mrr", "MRR"),
    ("sampled_uniform", "hr@10", "HR@10 (sampled, uniform)"),
    ("sampled_uniform", "ndcg@10", "NDCG@10 (sampled, uniform)"),
    ("sampled_popularity", "hr@10", "HR@10 (sampled, popularity)"),
    ("sampled_popularity", "ndcg@10", "NDCG@10 (sampled, popularity)"),
)


def evaluate_groups(
    model: SequenceTransformer, evaluator: Evaluator, groups: dict[str, np.ndarray]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Test metrics (full + sampled) for each group of users, and the evaluation protocol."""
    scorer = TransformerScorer(model)
    out, protocol = {}, {}
    for name, users in groups.items():
        metrics = evaluator.evaluate(scorer, which="test", users=users)
        protocol = metrics.pop("protocol")
        out[name] = metrics
    return out, protocol


def train_variant(
    split: SequenceSplit, cfg: ExperimentConfig, content: torch.Tensor | None
) -> tuple[SequenceTransformer, dict[str, Any]]:
    """Train one model on the hold-out split (checkpoints in a temporary folder)."""
    with tempfile.TemporaryDirectory() as run_dir:
        fit = fit_transformer(split, cfg, Path(run_dir), progress=False, content=content)
    info = {
        "train_seconds": round(fit.train_seconds, 1),
        "epochs": fit.epochs,
        "best_val_ndcg@10": fit.best_val_ndcg10,
        "n_parameters": fit.model.num_parameters(),
        "history": fit.history,
    }
    return fit.model, info


def markdown(result: dict[str, Any]) -> str:
    """The results table with a header that states the protocol."""
    s = result["setup"]
    budget = f"a {s['minutes']:g} min training budget each" if s["minutes"] else "no training time limit"
    lines = [
        f"{result['model']} on {result['dataset']}: {s['cold_items']} of {s['n_items']} items "
        f"({s['share']:.0%}, seed {s['seed']}) held out of training; {s['cold_users']} test users "
        f"have a held-out target (cold), {s['warm_users']} do not (warm). Both models: same config, "
        f"{budget}; fused = ID embedding + "
        f"Linear(MiniLM text vector). new_items: held-out items reset as new (ID part zeroed, mean "
        "bias); as_trained: weights as trained. Full = ranked against all items; sampled columns use "
        f"{s['n_negatives']} negatives and overstate quality. Machine: {s['machine']}.",
        "",
    ]
    header = ["model", "held-out items", "users", "n", *(label for _, _, label in COLUMNS)]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|")
    for variant in VARIANTS:
        for treatment in TREATMENTS:
            for group in GROUPS:
                m = result["results"][variant][treatment][group]
                cells = [variant, treatment, group, str(m["n_users"])]
                cells += [f"{m[mode][metric]:.4f}" for mode, metric, _ in COLUMNS]
                lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| model | train s | epochs | best val NDCG@10 (warm) | parameters |",
        "|---|---:|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        r = result["results"][variant]
        best = r["best_val_ndcg@10"]
        lines.append(
            f"| {variant} | {r['train_seconds']} | {r['epochs']} | "
            f"{'-' if best is None else f'{best:.4f}'} | {r['n_parameters']:,} |"
        )
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    """Atomically: a temporary sibling, then one rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="ml-1m")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--model", default="bert4rec", choices=["bert4rec", "sasrec"])
    p.add_argument("--minutes", type=float, default=None, help="training budget per model")
    p.add_argument("--share", type=float, default=0.1, help="share of items held out of training")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out item choice")
    p.add_argument("--name", default=None, help="results name (default: the dataset)")
    p.add_argument(
        "--set", dest="sets", action="append", default=[], help="config override section.field=value"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    overrides = option_overrides(args.sets, args.data_dir, args.minutes)
    base = build_config(args.preset, overrides).for_model(args.model)
    configs = {
        variant: base.model_copy(
            update={"model": base.model.model_copy(update={"content_fusion": variant == "fused"})}
        )
        for variant in VARIANTS
    }
    prepared = prepare(base)
    split = prepared.split
    cold = choose_cold_items(split, args.share, args.seed)
    held = hold_out_items(split, cold)
    cold_u = cold_users(held, cold)
    if len(cold_u) == 0:
        raise SystemExit(f"no test user has one of the {len(cold)} held-out items as target; raise --share")
    groups = {"cold": cold_u, "warm": np.setdiff1d(held.users("test"), cold_u)}
    print(
        f"{dataset_name(base)}: {split.n_items} items, {len(cold)} held out "
        f"({held.stats['held_out_train_interactions']} training interactions removed); "
        f"{len(groups['cold'])} cold / {len(groups['warm'])} warm test users"
    )
    start = time.perf_counter()
    content = content_vectors(prepared)  # of the full catalogue: held-out items keep their text
    embed_seconds = time.perf_counter() - start
    print(f"embedded {split.n_items} item texts with {MINILM_NAME} in {embed_seconds:.1f} s")

    evaluator = Evaluator(held, base.eval)  # one evaluator: every model ranks the same negatives
    results: dict[str, Any] = {}
    protocol: dict[str, Any] = {}
    for variant in VARIANTS:
        model, info = train_variant(held, configs[variant], content if variant == "fused" else None)
        new = copy.deepcopy(model)
        new.reset_items(torch.from_numpy(cold))
        info["new_items"], protocol = evaluate_groups(new, evaluator, groups)
        info["as_trained"], _ = evaluate_groups(model, evaluator, groups)
        results[variant] = info
        for treatment in TREATMENTS:
            full = {g: info[treatment][g]["full"] for g in GROUPS}
            cells = ", ".join(
                f"{g} ndcg@10={m['ndcg@10']:.4f} hr@10={m['hr@10']:.4f}" for g, m in full.items()
            )
            print(f"{variant} ({treatment}, {info['train_seconds']} s): {cells}")

    fused_cfg = configs["fused"].model_dump(mode="json")
    meta = run_metadata(fused_cfg, base.train.seed, held.fingerprint, held.stats)
    name = args.name or dataset_name(base)
    result = {
        "benchmark": "cold_start",
        "model": args.model,
        "dataset": dataset_name(base),
        "setup": {
            "share": args.share,
            "seed": args.seed,
            "n_items": split.n_items,
            "cold_items": int(len(cold)),
            "cold_users": int(len(groups["cold"])),
            "warm_users": int(len(groups["warm"])),
            "minutes": args.minutes,
            "n_negatives": base.eval.n_negatives,
            "encoder": MINILM_NAME,
            "embed_seconds": round(embed_seconds, 1),
            "machine": f"{meta['platform']}, {meta['cpu_count']} CPUs"
            + (f", {meta['accelerator']}" if meta["accelerator"] else ""),
            "held_out_item_ids": split.vocab.decode_items(cold),
        },
        "results": results,
        "protocol": protocol,
        "config": fused_cfg,
        "run": meta,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    _write(RESULTS / f"cold_start_{name}.json", json.dumps(result, indent=2, default=str) + "\n")
    table = markdown(result)
    _write(RESULTS / f"cold_start_{name}.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
