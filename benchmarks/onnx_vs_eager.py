"""Benchmark: eager PyTorch vs an ONNX Runtime export of the same model's inference path (issue #4).

1. export `model.predict(seq)` ((B, L) int64 item indices -> (B, n_items + 1) scores of the last
   position) with `torch.onnx.export(dynamo=True)`, batch and sequence length dynamic;
2. check the ONNX outputs against eager on real histories of several lengths (max abs difference
   within `--atol`, identical top-10);
3. time both, 1 thread each (torch.set_num_threads(1) + inference_mode; ORT 1 intra-op thread,
   sequential execution), interleaved call by call so that machine noise hits both alike:
   batch 1 at sequence lengths 10 / 50 / 200 and a batch of 32 random users.

Only the model call is timed (the rest of a request, top-k and id mapping, is the same for both).
Queries are the model's own stored user sequences, drawn with a fixed seed. Nothing is trained here.
Writes `<out>/<name>.json` and `<out>/<name>.md`.

    python benchmarks/onnx_vs_eager.py --model runs/benchmarks/ml-1m/bert4rec/model
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bert4rec.artifacts import load_bundle
from bert4rec.data.kinds import sequence_kind
from bert4rec.io import write_json_and_markdown
from bert4rec.models.transformer import SequenceTransformer

# results are grouped by study: benchmarks/results/<study>/ (index: docs/benchmarks/index.md)
RESULTS = Path(__file__).resolve().parent / "results" / "serving"
CHECK_LENGTHS = (1, 10, 50, 199)  # history lengths (BERT4Rec appends a [MASK]: inputs of 2..200)
BATCH1_LENGTHS = (10, 50, 200)  # input sequence lengths timed at batch 1
FASTER = 0.20  # ONNX Runtime must be this much faster at batch 1 to be worth a second serving path


class PredictPath(torch.nn.Module):
    """The inference path as a plain module: (B, L) item indices -> (B, n_items + 1) scores."""

    def __init__(self, model: SequenceTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.model(seq)[0]


def export_onnx(model: SequenceTransformer, path: Path) -> float:
    """Export with the dynamo exporter (handles SDPA with a bool mask); returns seconds taken."""
    example = torch.randint(1, model.n_items + 1, (2, 37))
    batch = torch.export.Dim("batch", min=1, max=65536)
    length = torch.export.Dim("length", min=1, max=model.cfg.max_len)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            PredictPath(model).eval(),
            (example,),
            str(path),
            dynamo=True,
            input_names=["seq"],
            output_names=["scores"],
            dynamic_shapes={"seq": {0: batch, 1: length}},
            optimize=True,
            external_data=False,  # one self-contained file (the weights are a few MB)
            verbose=False,
        )
    return time.perf_counter() - start


def ort_session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def histories_of_length(sequences: list[np.ndarray], length: int, n: int, rng: np.random.Generator) -> list:
    """`n` real histories of exactly `length` items: the last `length` items of random long-enough users."""
    users = [u for u, s in enumerate(sequences) if len(s) >= length]
    return [sequences[u][-length:] for u in rng.choice(users, size=n, replace=len(users) < n)]


def summary(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {
        "n": len(s),
        "p50_ms": round(statistics.median(s), 4),
        "p99_ms": round(s[min(len(s) - 1, round(0.99 * (len(s) - 1)))], 4),
        "mean_ms": round(statistics.fmean(s), 4),
    }


def time_pair(model: SequenceTransformer, sess: Any, seq: torch.Tensor, calls: int, warmup: int) -> dict:
    """Interleave eager and ORT calls on the same input (alternating which goes first)."""
    seq_np = seq.numpy()
    eager, onnx = [], []
    with torch.inference_mode():
        for i in range(warmup + calls):
            for which in ("eager", "onnx") if i % 2 == 0 else ("onnx", "eager"):
                start = time.perf_counter()
                if which == "eager":
                    model.predict(seq)
                else:
                    sess.run(None, {"seq": seq_np})
                took = (time.perf_counter() - start) * 1000
                if i >= warmup:
                    (eager if which == "eager" else onnx).append(took)
    e, o = summary(eager), summary(onnx)
    return {
        "batch": seq.shape[0],
        "length": seq.shape[1],
        "eager": e,
        "onnx": o,
        "speedup_p50": round(e["p50_ms"] / o["p50_ms"], 3),  # > 1: ONNX Runtime is faster
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a saved model folder (bert4rec train)")
    p.add_argument("--calls", type=int, default=300, help="timed calls per backend and shape")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--batch", type=int, default=32, help="the batched case's size")
    p.add_argument("--atol", type=float, default=1e-4, help="max |onnx - eager| allowed on scores")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--onnx-path", type=Path, default=None, help="keep the exported file here")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="onnx_vs_eager")
    args = p.parse_args()

    import onnxruntime as ort

    torch.set_num_threads(1)
    bundle = load_bundle(args.model)
    model = bundle.model.eval()
    kind, max_len, n_items = sequence_kind(model.model_type), model.cfg.max_len, model.n_items
    max_hist = kind.max_history(max_len)
    rng = np.random.default_rng(args.seed)

    tmp = tempfile.TemporaryDirectory()
    onnx_path = args.onnx_path or Path(tmp.name) / "model.onnx"
    export_s = export_onnx(model, onnx_path)
    sess = ort_session(onnx_path)
    print(f"exported in {export_s:.1f} s -> {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB)")

    # ---- correctness on real histories: batch 1 per length, then all lengths in one padded batch
    checks = []
    mixed: list[np.ndarray] = []
    for length in CHECK_LENGTHS:
        hist = histories_of_length(bundle.sequences, min(length, max_hist), 8, rng)
        mixed += hist[:2]
        for batch in (hist[:1], hist):
            checks.append(
                (f"history {length}, batch {len(batch)}", kind.inference_batch(batch, max_len, n_items))
            )
    checks.append(("mixed lengths, one padded batch", kind.inference_batch(mixed, max_len, n_items)))
    correctness = []
    with torch.inference_mode():
        for label, seq in checks:
            eager = model.predict(seq).numpy()
            onnx = sess.run(None, {"seq": seq.numpy()})[0]
            top_e = np.argsort(-eager[:, 1:], axis=1, kind="stable")[:, :10]
            top_o = np.argsort(-onnx[:, 1:], axis=1, kind="stable")[:, :10]
            correctness.append(
                {
                    "case": label,
                    "shape": list(seq.shape),
                    "max_abs_diff": float(np.abs(eager - onnx).max()),
                    "top10_equal": bool((top_e == top_o).all()),
                }
            )
    max_diff = max(c["max_abs_diff"] for c in correctness)
    equal = max_diff <= args.atol and all(c["top10_equal"] for c in correctness)
    print(f"correctness: max |onnx - eager| = {max_diff:.2e} (atol {args.atol}), top-10 equal: {equal}")
    if not equal:
        raise SystemExit("ONNX outputs differ from eager beyond the tolerance; not timing")

    # ---- latency, interleaved
    timings = []
    for length in BATCH1_LENGTHS:
        hist = histories_of_length(bundle.sequences, length - (max_len - max_hist), 1, rng)
        timings.append(
            time_pair(model, sess, kind.inference_batch(hist, max_len, n_items), args.calls, args.warmup)
        )
        print(json.dumps(timings[-1]))
    users = rng.choice(len(bundle.sequences), size=args.batch, replace=False)
    batch_seq = kind.inference_batch([bundle.sequences[u] for u in users], max_len, n_items)
    timings.append(time_pair(model, sess, batch_seq, max(args.calls // 3, 30), args.warmup // 3))
    print(json.dumps(timings[-1]))

    batch1 = [t for t in timings if t["batch"] == 1]
    min_speedup = min(t["speedup_p50"] for t in batch1)
    onnx_wins = min_speedup > 1 / (1 - FASTER)
    if onnx_wins:
        verdict = (
            f"ONNX Runtime is clearly faster at batch 1 (p50 speedup >= {min_speedup:.2f}x at every length): "
            "worth an opt-in serving backend."
        )
    else:
        verdict = (
            f"Keep eager PyTorch: ONNX Runtime is not >{FASTER:.0%} faster at batch 1 at every length "
            f"(smallest p50 speedup {min_speedup:.2f}x; > 1 means ONNX faster), so a second serving "
            "path would add an export step and a dependency for little gain."
        )
    big = [t for t in timings if t["batch"] > 1][0]
    verdict += (
        f" At batch {big['batch']} (length {big['length']}) the p50 speedup is {big['speedup_p50']:.2f}x, "
        + ("so batched scoring (evaluation) stays eager." if big["speedup_p50"] < 1 else "too.")
    )
    print(verdict)

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    result = {
        "model": str(args.model),
        "model_type": bundle.config.model_type,
        "n_items": model.n_items,
        "max_len": model.cfg.max_len,
        "hidden_size": model.cfg.hidden_size,
        "num_layers": model.cfg.num_layers,
        "export": {
            "exporter": "torch.onnx.export(dynamo=True, optimize=True)",
            "seconds": round(export_s, 2),
            "bytes": onnx_path.stat().st_size,
        },
        "correctness": {"atol": args.atol, "max_abs_diff": max_diff, "passed": equal, "cases": correctness},
        "timings": timings,
        "calls": args.calls,
        "warmup": args.warmup,
        "onnx_wins_batch1": onnx_wins,
        "verdict": verdict,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "onnxruntime": ort.__version__,
            "ort_intra_op_threads": 1,
            "commit": commit,
        },
    }
    json_path, md_path = write_json_and_markdown(args.out, args.name, result, render_md(result))
    print(f"wrote {json_path} and {md_path}")
    tmp.cleanup()


def render_md(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"# Eager PyTorch vs ONNX Runtime: {r['model_type']}",
        "",
        f"Model `{r['model']}`: {r['model_type']}, {r['n_items']:,} items, max_len {r['max_len']}, "
        f"hidden {r['hidden_size']}, {r['num_layers']} layers.",
        f"Export: `{r['export']['exporter']}`, dynamic batch and sequence length, "
        f"{r['export']['seconds']} s, {r['export']['bytes'] / 1e6:.1f} MB.",
        f"Machine: {m['platform']}, torch {m['torch']} ({m['torch_threads']} thread, inference_mode), "
        f"onnxruntime {m['onnxruntime']} (1 intra-op thread, sequential execution), commit {m['commit']}.",
        "",
        f"Correctness on real histories of {', '.join(map(str, CHECK_LENGTHS))} items (batch 1 and 8, "
        f"plus one mixed padded batch): max |onnx - eager| = {r['correctness']['max_abs_diff']:.1e} "
        f"(tolerance {r['correctness']['atol']}), top-10 identical: {r['correctness']['passed']}.",
        "",
        f"Model call only, {r['calls']} calls per backend and shape at batch 1 (a third of that at the "
        "batch), eager and ONNX interleaved call by call:",
        "",
        "| batch | length | eager p50 ms | eager p99 ms | ONNX p50 ms | ONNX p99 ms | speedup (p50) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in r["timings"]:
        e, o = t["eager"], t["onnx"]
        lines.append(
            f"| {t['batch']} | {t['length']} | {e['p50_ms']:.3f} | {e['p99_ms']:.3f} | {o['p50_ms']:.3f} "
            f"| {o['p99_ms']:.3f} | {t['speedup_p50']:.2f}x |"
        )
    lines += [
        "",
        "Speedup = eager p50 / ONNX p50 (> 1: ONNX Runtime faster).",
        "",
        f"**Verdict:** {r['verdict']}",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
