"""Benchmark: full vs sampled softmax training steps as the catalog grows (project issue #5).

Synthetic data with real sequential structure and Zipf popularity (`generate_sequences`): each user
walks along item chains (item i is usually followed by i + 1, sometimes by i + 2..4) and now and
then jumps to an item drawn from a Zipf(1) popularity over a random permutation of the catalog.
Losses: `full` is the full softmax as training computes it (`training.losses.training_loss`: fused
with the output layer chunk by chunk, bert4rec.training.chunked_softmax), `full_plain` the same loss
through the (N, n_items + 1) logit matrix (`training.losses.plain_full_loss`, what training used
before), `sampled` the sampled
softmax (train.loss = sampled). For every catalog size and loss a FRESH subprocess generates the data,
builds the model and the real training loader (`make_train_loader`, `make_negative_sampler`) and
times forward + backward + AdamW steps; its peak resident memory (`ru_maxrss`, which a fresh process
does not share with the other variants) and, on a GPU, `torch.cuda.max_memory_allocated` are
reported, next to the memory the process had before the first training step. A full_plain variant
whose (N, n_items + 1) float32 logits would exceed `--max-logits-gb` (default 3 GB; a smoke run
measured the training step's RSS growth at ~4x the logits: logits, softmax and their gradients) is
recorded as skipped rather than run, so the sweep cannot take the machine down.
Writes benchmarks/results/large-catalog/large_catalog.json and large_catalog.md (or into `--out`).

Full sweep (1.2M interactions, catalogs from 10k to 200k items):

    python benchmarks/large_catalog.py --sizes 10000,50000,100000,200000 --interactions 1200000 \
        --steps 20 --warmup 3 --n-negatives 1024 --sampling popularity

Smoke check (seconds; writes nowhere near the results unless --out says so):

    python benchmarks/large_catalog.py --sizes 5000,20000 --interactions 100000 --steps 2 --warmup 1 \
        --out /tmp/large_catalog_smoke
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# results are grouped by study: benchmarks/results/<study>/ (index: docs/benchmarks/index.md)
RESULTS = Path(__file__).resolve().parent / "results" / "large-catalog"


def generate_sequences(n_users: int, n_items: int, n_interactions: int, seed: int = 0) -> list[np.ndarray]:
    """Per-user item index sequences (1..n_items, oldest first) totalling `n_interactions` events;
    vectorised, ~1 s for 10^6 events. Each event continues the user's chain (+1 with p=0.7, +2..4
    with p=0.15) or, for a user's first event and with p=0.15, jumps to a Zipf-popular item."""
    rng = np.random.default_rng(seed)
    # user lengths: a geometric-like spread around the mean, at least 3 (leave-one-out needs 3)
    lengths = np.maximum(3, rng.exponential(n_interactions / n_users, n_users).astype(np.int64))
    lengths = np.maximum(3, (lengths * n_interactions / lengths.sum()).astype(np.int64))
    total = int(lengths.sum())
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    # Zipf(1) popularity over a random permutation of the items
    rank_weight = 1.0 / np.arange(1, n_items + 1)
    popular = rng.permutation(n_items)[
        np.searchsorted(np.cumsum(rank_weight) / rank_weight.sum(), rng.random(total))
    ]  # (total,) item drawn by popularity, used where the walk jumps
    r = rng.random(total)
    jump = r >= 0.85
    jump[starts] = True
    step = np.where(r < 0.7, 1, rng.integers(2, 5, total))  # (total,) chain step where no jump
    step[jump] = 0
    # item = popular item at the last jump + chain steps taken since then (segmented cumsum)
    walked = np.cumsum(step)
    last_jump = np.maximum.accumulate(np.where(jump, np.arange(total), 0))
    items = (popular[last_jump] + walked - walked[last_jump]) % n_items + 1
    return np.split(items.astype(np.int64), np.cumsum(lengths)[:-1])


def _split(sequences: list[np.ndarray], n_items: int) -> Any:
    """A SequenceSplit whose training part is the sequences without their last two items."""
    from bert4rec.data.sequences import SequenceSplit
    from bert4rec.data.vocab import Vocab

    vocab = Vocab(list(range(1, n_items + 1)), list(range(len(sequences))))
    return SequenceSplit(
        vocab=vocab,
        train=[s[:-2] for s in sequences],
        val_target=np.array([s[-2] for s in sequences]),
        test_target=np.array([s[-1] for s in sequences]),
        stats={},
    )


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One variant in this (fresh) process: data, model, timed training steps."""
    import torch

    from bert4rec.config import build_config
    from bert4rec.models import build_transformer
    from bert4rec.training.fit import make_negative_sampler, make_train_loader
    from bert4rec.training.losses import plain_full_loss, training_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    sequences = generate_sequences(args.users, args.n_items, args.interactions, seed=args.seed)
    split = _split(sequences, args.n_items)
    gen_s = time.perf_counter() - start
    cfg = build_config(
        overrides={
            "model_type": args.model,
            "model": {"max_len": args.max_len, "hidden_size": args.hidden, "num_heads": 2, "num_layers": 2},
            "train": {
                "batch_size": args.batch_size,
                "loss": "sampled" if args.loss == "sampled" else "full",
                "n_negatives_train": args.n_negatives,
                "negative_sampling": args.sampling,
                "seed": args.seed,
            },
        }
    )
    device = torch.device(args.device)
    model = build_transformer(args.model, cfg.model, split.n_items).to(device).train()
    sampler = make_negative_sampler(split, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = iter(make_train_loader(split, cfg))
    batches = [next(loader) for _ in range(args.warmup + args.steps)]
    labelled = max(int((b["labels"] > 0).sum()) for b in batches)
    n_out = (1 + args.n_negatives) if args.loss == "sampled" else (args.n_items + 1)
    logits_gb = labelled * n_out * 4 / 1e9
    row: dict[str, Any] = {
        "n_items": args.n_items,
        "loss": args.loss,
        "interactions": int(sum(len(s) for s in sequences)),
        "users": len(sequences),
        "generate_s": round(gen_s, 2),
        "max_labelled_positions": labelled,
        "logits_gb": round(logits_gb, 3),
        "rss_before_train_mb": round(_max_rss_mb(), 1),
    }
    if args.loss == "full_plain" and logits_gb > args.max_logits_gb:
        row["skipped"] = f"(N, n_items + 1) logits would take {logits_gb:.1f} GB > --max-logits-gb"
        return row
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    for i, batch in enumerate(batches):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        negatives = sampler.sample(device) if sampler is not None else None
        inputs, labels = batch["input_ids"].to(device), batch["labels"].to(device)
        if args.loss == "full_plain":
            loss = plain_full_loss(model, inputs, labels)
        else:
            loss = training_loss(model, inputs, labels, negatives=negatives)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= args.warmup:
            times.append((time.perf_counter() - t0) * 1000)
        losses.append(float(loss))
    row.update(
        {
            "ms_per_step": round(statistics.median(times), 1),
            "ms_per_step_min": round(min(times), 1),
            "peak_rss_mb": round(_max_rss_mb(), 1),
            "first_loss": round(losses[0], 4),
            "last_loss": round(losses[-1], 4),
        }
    )
    row["train_rss_increase_mb"] = round(row["peak_rss_mb"] - row["rss_before_train_mb"], 1)
    if device.type == "cuda":
        row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return row


def _markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# Large catalogs: full (chunked), full through the logit matrix, and sampled softmax",
        "",
        f"{args.model}, max_len {args.max_len}, hidden {args.hidden}, batch {args.batch_size}, "
        f"{args.interactions:,} generated interactions, {args.users:,} users, device {args.device}, "
        f"{args.threads} threads; sampled = {args.n_negatives} shared {args.sampling} negatives with "
        f"logQ correction. Median of {args.steps} steps after {args.warmup} warm-up steps; each "
        "variant in a fresh process. `logits GB` is the size of the (positions, items) logit matrix "
        "that full_plain builds; the chunked full loss holds one (chunk, items) block of it at a time.",
        "",
        "| items | loss | ms/step | peak RSS MB | RSS growth in training MB | logits GB | note |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n_items']:,} | {r['loss']} | {r.get('ms_per_step', '-')} | {r.get('peak_rss_mb', '-')} | "
            f"{r.get('train_rss_increase_mb', '-')} | {r.get('logits_gb', '-')} | "
            f"{r.get('skipped') or r.get('error') or ''} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,50000,100000,200000", help="Catalog sizes (items).")
    parser.add_argument("--losses", default="full_plain,full,sampled")
    parser.add_argument("--interactions", type=int, default=1_200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--model", default="sasrec", choices=["sasrec", "bert4rec"])
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-negatives", type=int, default=1024)
    parser.add_argument("--sampling", default="popularity", choices=["popularity", "uniform"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--max-logits-gb", type=float, default=3.0, help="Skip full softmax beyond this (RSS grows ~4x it)."
    )
    parser.add_argument("--timeout", type=float, default=1800, help="Seconds per variant.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n-items", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--loss", default="full", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    rows = []
    shared = ["interactions", "users", "model", "max_len", "hidden", "batch_size", "n_negatives", "sampling"]
    shared += ["steps", "warmup", "threads", "device", "max_logits_gb", "seed"]
    passthrough = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in shared]
    for n_items in [int(s) for s in args.sizes.split(",")]:
        for loss in args.losses.split(","):
            cmd = [
                sys.executable,
                __file__,
                *passthrough,
                "--worker",
                f"--n-items={n_items}",
                f"--loss={loss}",
            ]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                if proc.returncode == 0:
                    row = json.loads(proc.stdout.strip().splitlines()[-1])
                else:  # e.g. killed by the OOM killer (-9)
                    row = {"n_items": n_items, "loss": loss, "error": f"exit {proc.returncode}: "}
                    row["error"] += (proc.stderr.strip().splitlines() or [""])[-1][:200]
            except subprocess.TimeoutExpired:
                row = {"n_items": n_items, "loss": loss, "error": f"timeout after {args.timeout:.0f} s"}
            print(json.dumps(row), flush=True)
            rows.append(row)
    from bert4rec.evaluation.results import run_metadata
    from bert4rec.io import atomic_write_text

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings = {k: v for k, v in settings.items() if k not in ("worker", "n_items", "loss")}
    meta = run_metadata(settings, args.seed, "generated", {"interactions": args.interactions})
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        args.out / "large_catalog.json",
        json.dumps({"settings": settings, "meta": meta, "rows": rows}, indent=2) + "\n",
    )
    atomic_write_text(args.out / "large_catalog.md", _markdown(rows, args))
    print(f"wrote {args.out / 'large_catalog.json'} and large_catalog.md")


if __name__ == "__main__":
    main()
