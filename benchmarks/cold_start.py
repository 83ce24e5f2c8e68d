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

`--zero-day` measures real new items instead: the held-out items are absent from training AND from
the catalogue at training time (not in the vocabulary or the item table), and are added after
training through the catalogue-update path (`Recommender.add_items`, title + genres through the
trained fusion). Models: ID-only, fused (with `model.id_dropout`; `fused_p<share>` for another
share), a content-only baseline (MiniLM similarity to the user's recent history) and chance, all
ranked over every item (trained + new), with exposure (share of top-10 lists holding a new item)
and the curve of `model.new_item_exposure`. Fixed epochs (`--epochs`) on `--threads` threads, so a
shared machine changes the time, not the result. Writes benchmarks/results/cold-start/zero_day_<dataset>.json
and .md (`_seed<N>` for another held-out seed). Trained bundles are kept in `--work-dir` and reused.

    python benchmarks/cold_start.py --zero-day --preset ml-1m --data-dir ../shared/data/ml-1m \
        --epochs 10 --variants id_only fused fused_p0

    python benchmarks/cold_start.py --preset ml-1m --data-dir ../shared/data/ml-1m --minutes 10
    python benchmarks/cold_start.py --preset demo --minutes 0.3        # smoke test, generated data
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from bert4rec.artifacts import save_bundle
from bert4rec.config import ExperimentConfig, build_config, deep_merge, option_overrides
from bert4rec.data.cold_start import choose_cold_items, cold_users, hold_out_items
from bert4rec.data.kinds import sequence_kind
from bert4rec.data.sequences import SequenceSplit
from bert4rec.data.vocab import Vocab
from bert4rec.evaluation.evaluator import Evaluator
from bert4rec.evaluation.metrics import metric_table, rank_of_target
from bert4rec.evaluation.results import run_metadata
from bert4rec.evaluation.scoring import TransformerScorer
from bert4rec.inference.catalog import new_item_bias, reset_items
from bert4rec.models.transformer import SequenceTransformer
from bert4rec.pipeline import content_vectors, dataset_name, prepare
from bert4rec.text import MINILM_NAME
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
    p.add_argument(
        "--zero-day", action="store_true", help="held-out items absent from training and catalogue"
    )
    p.add_argument("--epochs", type=int, default=15, help="zero-day: fixed epochs per model")
    p.add_argument("--threads", type=int, default=1, help="zero-day: torch threads")
    p.add_argument("--work-dir", default="runs/zero_day", help="zero-day: trained bundles (reused)")
    p.add_argument(
        "--variants",
        nargs="+",
        default=["id_only", "fused"],
        help="zero-day: id_only, fused, fused_p<id dropout>",
    )
    p.add_argument("--train-only", action="store_true", help="zero-day: train (and cache) the variants only")
    p.add_argument("--note", default="", help="zero-day: a remark for the results header (e.g. machine load)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.zero_day:
        return zero_day_main(args)

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
        reset_items(new, torch.from_numpy(cold))
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


# ============================================================================================ zero day
# `--zero-day`: the held-out items are absent from training AND from the catalogue at training time
# (not in the vocabulary, not in the item table), and are added after training through the
# catalogue-update path (Recommender.add_items), as a real new item would be.

# a new item reaches a top 10 of ~3,400 items only near the top of the trained items' scores
ZD_KNOBS = {"score": (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 1.0), "bias": (0.0, 0.5, 1.0)}
ZD_RECENT = 10  # history items the content-only baseline averages


@dataclass
class ZeroDaySplits:
    train: SequenceSplit  # trained items only (indices 1..n_trained); held-out targets set to 0
    full: SequenceSplit  # trained items, then the held-out ones (n_trained + 1 ..), in `new_ids` order
    new_ids: list[Any]  # external ids of the held-out items
    items_train: pl.DataFrame  # item table without the held-out items


def zero_day_splits(split: SequenceSplit, items: pl.DataFrame, share: float, seed: int) -> ZeroDaySplits:
    """Remove a seeded `share` of the items from the vocabulary, the item table and every input.

    A held-out validation target is dropped (model selection never sees a new item); a held-out
    test target is kept in `full` (the cold users). No held-out item is in any training,
    validation or test input.
    """
    cold = choose_cold_items(split, share, seed)  # indices in `split`
    is_cold = np.zeros(split.n_items + 2, dtype=bool)
    is_cold[cold] = True
    kept = np.flatnonzero(~is_cold[1 : split.n_items + 1]) + 1
    # old index -> new index: kept items 1..n_trained, held-out items after them
    remap = np.zeros(split.n_items + 1, dtype=np.int64)
    remap[kept] = np.arange(1, len(kept) + 1)
    remap[cold] = np.arange(len(kept) + 1, split.n_items + 1)
    old_ids = split.vocab.item_ids
    new_ids = [old_ids[i - 1] for i in cold]
    trained_ids = [old_ids[i - 1] for i in kept]
    users = list(split.vocab.user_ids)
    train = [remap[seq[~is_cold[seq]]] for seq in split.train]
    val = np.where(is_cold[split.val_target], 0, remap[split.val_target])
    test = remap[split.test_target]
    stats = dict(split.stats, held_out_items=len(cold), cold_test_users=int(is_cold[split.test_target].sum()))
    fingerprint = hashlib.sha256(split.fingerprint.encode() + cold.tobytes()).hexdigest()[:16]
    full = SequenceSplit(Vocab(trained_ids + new_ids, users), train, val, test, stats, fingerprint)
    train_split = SequenceSplit(
        Vocab(trained_ids, users), train, val, np.where(test > len(kept), 0, test), stats, fingerprint
    )
    items_train = items.filter(~pl.col("item_id").is_in(new_ids))
    return ZeroDaySplits(train_split, full, new_ids, items_train)


class _Padded:
    """An ID-only model's scores over the extended catalogue: it knows nothing of the new items, so
    they all get one score (a quantile of its output biases; ties count against the target)."""

    def __init__(self, scorer: TransformerScorer, n_new: int, value: float) -> None:
        self.scorer, self.n_new, self.value, self.name = scorer, n_new, value, "id_only"

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        scores = self.scorer.score(users, histories)
        return torch.cat([scores, torch.full((len(histories), self.n_new), self.value)], dim=1)


class _Hidden:
    """The test users' output hidden states, computed once: the knob only changes the new items' output
    biases, and no input holds a new item, so every knob setting scores from the same states."""

    def __init__(self, model: SequenceTransformer, split: SequenceSplit, users: np.ndarray) -> None:
        self.row = {int(u): j for j, u in enumerate(users)}
        histories = split.inputs("test", users)
        parts = []
        kind = sequence_kind(model.model_type)
        with torch.inference_mode():
            for start in range(0, len(users), 256):
                seq = kind.inference_batch(histories[start : start + 256], model.cfg.max_len, model.n_items)
                parts.append(kind.read(model(seq)))
        self.states = torch.cat(parts)  # (U, D)

    def scorer(self, model: SequenceTransformer) -> Any:
        weights, bias = model.item_weights().detach(), model.head_bias.detach()
        row = self.row
        states = self.states

        class _Scores:
            name = "precomputed"

            def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
                return states[[row[int(u)] for u in users]] @ weights.T + bias

        return _Scores()


class ContentOnly:
    """Content-only baseline: cosine of each item's MiniLM vector to the mean vector of the user's
    `recent` last history items."""

    name = "content_only"

    def __init__(self, vectors: torch.Tensor, recent: int = ZD_RECENT) -> None:
        self.vectors = torch.nn.functional.normalize(vectors.float(), dim=1)  # (n_items + 1, C)
        self.recent = recent

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        query = torch.stack(
            [
                self.vectors[torch.from_numpy(np.asarray(h[-self.recent :], dtype=np.int64))].mean(0)
                for h in histories
            ]
        )
        return torch.nn.functional.normalize(query, dim=1) @ self.vectors.T


class Chance:
    """Uniformly random scores (seeded): the chance level of full ranking."""

    name = "chance"

    def __init__(self, n_items: int, seed: int = 0) -> None:
        self.n_items, self.generator = n_items, torch.Generator().manual_seed(seed)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.rand(len(histories), self.n_items + 1, generator=self.generator)


def full_ranking(
    scorer: Any, split: SequenceSplit, users: np.ndarray, n_trained: int, batch: int = 256
) -> dict[str, float]:
    """Full-ranking test metrics over every item (trained + new) and exposure: the share of top-10
    lists holding at least one new item (index > n_trained). Seen items are excluded (the target
    never), ties count against the target, as in the Evaluator."""
    histories = split.inputs("test", users)
    targets = split.test_target[users]
    ranks, exposed = [], []
    for start in range(0, len(users), batch):
        scores = scorer.score(users[start : start + batch], histories[start : start + batch]).float().clone()
        target = torch.from_numpy(targets[start : start + batch])
        target_scores = scores.gather(1, target[:, None])
        for row, h in enumerate(histories[start : start + batch]):
            scores[row, torch.from_numpy(h)] = -torch.inf
        scores.scatter_(1, target[:, None], target_scores)
        scores[:, 0] = -torch.inf
        ranks.append(rank_of_target(scores, target))
        top = scores.topk(10, dim=1).indices
        exposed.append((top > n_trained).any(dim=1))
    r = torch.cat(ranks).numpy()
    table = metric_table(r, [10])
    return {
        "n_users": int(len(users)),
        "hr@10": table["hr@10"],
        "ndcg@10": table["ndcg@10"],
        "mrr": table["mrr"],
        "exposure@10": float(torch.cat(exposed).float().mean()),
    }


def zero_day_train(
    name: str, splits: ZeroDaySplits, cfg: ExperimentConfig, content: torch.Tensor | None, work: Path
) -> tuple[Path, dict[str, Any]]:
    """Train one variant on the training split and save its bundle under `work/name` (reused if there)."""
    bundle = work / name / "model"
    info_file = work / name / "info.json"
    if bundle.is_dir() and info_file.is_file():
        print(f"{name}: reusing {bundle}")
        return bundle, json.loads(info_file.read_text())
    model, info = train_variant(splits.train, cfg, content)
    save_bundle(
        bundle,
        config=cfg,
        model=model,
        split=splits.train,
        items=splits.items_train,
        display_col="title",
        metrics={},
        run={"data_fingerprint": splits.train.fingerprint},
    )
    _write(info_file, json.dumps(info, default=str))
    print(f"{name}: trained in {info['train_seconds']} s, {info['epochs']} epochs")
    return bundle, info


def zero_day_main(args: argparse.Namespace) -> int:
    from bert4rec.inference.catalog import NewItem
    from bert4rec.inference.recommender import Recommender
    from bert4rec.text import MiniLMEncoder, item_text_vectors

    overrides = option_overrides(args.sets, args.data_dir, None)
    overrides = deep_merge(
        overrides,
        {
            "data": {"metadata_cols": ["title", "genres"]},
            "train": {"epochs": args.epochs, "patience": None, "num_threads": args.threads},
        },
    )
    base = build_config(args.preset, overrides).for_model(args.model)
    torch.set_num_threads(args.threads)
    prepared = prepare(base)
    items = prepared.interactions.items
    if items is None:
        raise SystemExit("the data has no item titles or metadata; zero-day items need text")
    splits = zero_day_splits(prepared.split, items, args.share, args.seed)
    n_trained, n_new = splits.train.n_items, len(splits.new_ids)
    full = splits.full
    cold_mask = full.test_target > n_trained
    test_users = full.users("test")
    groups = {"cold": test_users[cold_mask[test_users]], "warm": test_users[~cold_mask[test_users]]}
    print(
        f"{dataset_name(base)}: {n_trained} trained items, {n_new} held out (absent from training and "
        f"the catalogue); {len(groups['cold'])} cold / {len(groups['warm'])} warm test users"
    )
    encoder = MiniLMEncoder()
    start = time.perf_counter()
    content = item_text_vectors(splits.items_train, splits.train.vocab, "title", encoder)
    embed_seconds = time.perf_counter() - start
    work = Path(args.work_dir) / f"seed{args.seed}"
    variants: dict[str, ExperimentConfig] = {}
    for name in args.variants:
        if name == "id_only":
            update = {"content_fusion": False}
        else:  # fused or fused_p<dropout>
            dropout = float(name.split("_p", 1)[1]) if "_p" in name else base.model.id_dropout
            update = {"content_fusion": True, "id_dropout": dropout}
        variants[name] = base.model_copy(update={"model": base.model.model_copy(update=update)})
    if args.train_only:
        for name, cfg in variants.items():
            zero_day_train(name, splits, cfg, content if cfg.model.content_fusion else None, work)
        return 0

    results: dict[str, Any] = {}
    new_items = None
    for name, cfg in variants.items():
        bundle, info = zero_day_train(name, splits, cfg, content if cfg.model.content_fusion else None, work)
        rec = Recommender.load(bundle, catalog=False)
        row: dict[str, Any] = {"train": info}
        if cfg.model.content_fusion:
            # the catalogue-update path: the held-out items with their title and genres, no interactions
            meta = splits_meta(items, splits.new_ids)
            start = time.perf_counter()
            rec.store = None  # evaluate in memory: leave the cached bundle's catalogue alone
            rec.add_items([NewItem(i, metadata=meta[i]) for i in splits.new_ids])
            row["add_seconds"] = round(time.perf_counter() - start, 1)
            assert rec.vocab.item_ids == full.vocab.item_ids
            curves: dict[str, dict[str, Any]] = {}
            hidden = _Hidden(rec.bundle.model, full, test_users)  # new items are in no input: reused
            for calibration, knobs in ZD_KNOBS.items():
                curve = curves.setdefault(calibration, {})
                for q in knobs:
                    rec.set_new_item_exposure(q, calibration)
                    scorer = hidden.scorer(rec.state.model)
                    curve[str(q)] = {g: full_ranking(scorer, full, u, n_trained) for g, u in groups.items()}
                    print(f"{name} {calibration} calibration, exposure {q}: " + _cells(curve[str(q)]))
            row["knob"] = curves
            row["default_knob"] = f"{cfg.model.new_item_calibration} {cfg.model.new_item_exposure}"
            row["metrics"] = curves[cfg.model.new_item_calibration][str(cfg.model.new_item_exposure)]
            if new_items is None:
                new_items = rec.state.model.content.vectors[: full.n_items + 1].clone()  # type: ignore[union-attr]
        else:
            model = rec.state.model
            value = new_item_bias(model, n_trained, base.model.new_item_exposure)
            scorer_p = _Padded(TransformerScorer(model), n_new, value)
            row["metrics"] = {g: full_ranking(scorer_p, full, u, n_trained) for g, u in groups.items()}
        print(f"{name}: " + _cells(row["metrics"]))
        results[name] = row
    if new_items is None:  # no fused variant ran: embed the held-out items directly
        full_items = items.filter(pl.col("item_id").is_in(full.vocab.item_ids))
        new_items = item_text_vectors(full_items, full.vocab, "title", encoder)[: full.n_items + 1]
    for baseline in (ContentOnly(new_items), Chance(full.n_items, args.seed)):
        metrics = {g: full_ranking(baseline, full, u, n_trained) for g, u in groups.items()}
        results[baseline.name] = {"metrics": metrics}
        print(f"{baseline.name}: " + _cells(metrics))

    meta_run = run_metadata(base.model_dump(mode="json"), base.train.seed, full.fingerprint, full.stats)
    name = args.name or f"zero_day_{dataset_name(base)}" + (f"_seed{args.seed}" if args.seed else "")
    out_json = RESULTS / f"{name}.json"
    result = {
        "benchmark": "zero_day",
        "model": args.model,
        "dataset": dataset_name(base),
        "setup": {
            "share": args.share,
            "seed": args.seed,
            "n_trained_items": n_trained,
            "n_new_items": n_new,
            "cold_users": int(len(groups["cold"])),
            "warm_users": int(len(groups["warm"])),
            "epochs": args.epochs,
            "torch_threads": args.threads,
            "encoder": MINILM_NAME,
            "embed_seconds": round(embed_seconds, 1),
            "content_only_recent": ZD_RECENT,
            "note": args.note,
            "machine": f"{meta_run['platform']}, {meta_run['cpu_count']} CPUs",
            "new_item_ids": splits.new_ids,
        },
        "results": results,
        "config": base.model_dump(mode="json"),
        "run": meta_run,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    _write(out_json, json.dumps(result, indent=2, default=str) + "\n")
    table = zero_day_markdown(result)
    _write(out_json.with_suffix(".md"), table)
    print(table)
    return 0


def zero_day_markdown(result: dict[str, Any]) -> str:
    """The zero-day table (one row per model, cold and warm users side by side) and the knob curves."""
    s = result["setup"]
    chance = 10 / (s["n_trained_items"] + s["n_new_items"])
    lines = [
        f"{result['model']} on {result['dataset']} with titles and genres: {s['n_new_items']} of "
        f"{s['n_trained_items'] + s['n_new_items']} items ({s['share']:.0%}, seed {s['seed']}) held out of "
        "training AND of the catalogue at training time, then added through the catalogue-update path "
        "(Recommender.add_items: title + genres through the trained fusion, no ID part). Full ranking over "
        f"all items; cold = the {s['cold_users']} test users whose target is a new item, warm = the other "
        f"{s['warm_users']}. Every model: {s['epochs']} epochs, {s['torch_threads']} torch thread. "
        "exposure@10 = share of top-10 lists holding at least one new item. content_only = MiniLM cosine "
        f"to the mean of the user's last {s['content_only_recent']} items; chance HR@10 ~ {chance:.4f}. "
        f"Machine: {s['machine']}." + (f" {s['note']}" if s.get("note") else ""),
        "",
        "| model | cold HR@10 | cold NDCG@10 | cold exposure@10 "
        "| warm HR@10 | warm NDCG@10 | warm exposure@10 | all NDCG@10 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cells(m: dict[str, float]) -> str:
        return f"{m['hr@10']:.4f} | {m['ndcg@10']:.4f} | {m['exposure@10']:.3f}"

    def overall(m: dict[str, dict[str, float]]) -> float:
        """NDCG@10 over all test users (cold and warm together)."""
        n = m["cold"]["n_users"] + m["warm"]["n_users"]
        return (m["cold"]["ndcg@10"] * m["cold"]["n_users"] + m["warm"]["ndcg@10"] * m["warm"]["n_users"]) / n

    for name, row in result["results"].items():
        m = row["metrics"]
        label = name + (f" (knob {row['default_knob']})" if "default_knob" in row else "")
        lines.append(f"| {label} | {cells(m['cold'])} | {cells(m['warm'])} | {overall(m):.4f} |")
    results = result["results"]
    if "id_only" in results and "content_only" in results:
        id_warm = results["id_only"]["metrics"]["warm"]["ndcg@10"]
        content_cold = results["content_only"]["metrics"]["cold"]["hr@10"]
        lines += [
            "",
            f"Targets: cold HR@10 >= 0.03 and above content_only ({content_cold:.4f}); warm NDCG@10 "
            f"within 3% of id_only ({id_warm:.4f}, so >= {0.97 * id_warm:.4f}).",
        ]
        for name, row in results.items():
            if "knob" not in row:
                continue
            m = row["metrics"]
            cold, warm = m["cold"]["hr@10"], m["warm"]["ndcg@10"]
            met = cold >= 0.03 and cold > content_cold and warm >= 0.97 * id_warm
            lines.append(
                f"- {name} ({row['default_knob']}): cold HR@10 {cold:.4f}, warm NDCG@10 {warm:.4f} "
                f"({warm / id_warm - 1:+.1%} against id_only): {'met' if met else 'missed'}"
            )
    for name, row in result["results"].items():
        for calibration, curve in row.get("knob", {}).items():
            lines += [
                "",
                f"Exposure knob, {name}, {calibration} calibration (model.new_item_calibration; "
                "model.new_item_exposure = the quantile of the trained items a new item is placed at):",
                "",
                "| exposure | cold HR@10 | cold NDCG@10 | cold exposure@10 "
                "| warm NDCG@10 | warm exposure@10 | all NDCG@10 |",
                "|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for q, m in curve.items():
                warm = m["warm"]
                lines.append(
                    f"| {q} | {cells(m['cold'])} | {warm['ndcg@10']:.4f} | {warm['exposure@10']:.3f} "
                    f"| {overall(m):.4f} |"
                )
    lines += ["", "| model | train s | epochs | best val NDCG@10 |", "|---|---:|---:|---:|"]
    for name, row in result["results"].items():
        if "train" in row:
            t = row["train"]
            best = t.get("best_val_ndcg@10")
            shown = "-" if best is None else f"{best:.4f}"
            lines.append(f"| {name} | {t['train_seconds']} | {t['epochs']} | {shown} |")
    return "\n".join(lines) + "\n"


def splits_meta(items: pl.DataFrame, ids: list[Any]) -> dict[Any, dict[str, Any]]:
    """Each id's metadata row (without item_id)."""
    rows = items.filter(pl.col("item_id").is_in(ids)).to_dicts()
    return {r.pop("item_id"): r for r in rows}


def _cells(metrics: dict[str, dict[str, float]]) -> str:
    return ", ".join(
        f"{g} hr@10={m['hr@10']:.4f} ndcg@10={m['ndcg@10']:.4f} exposure={m['exposure@10']:.3f}"
        for g, m in metrics.items()
    )


if __name__ == "__main__":
    sys.exit(main())
