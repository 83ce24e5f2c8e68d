"""Exact vs HNSW (vs Qdrant) item search on generated catalogues: latency, build time, memory, recall@10.

The Recommender's model path searches an intent vector [h, 1] against item vectors [w, b] (64-d item
vectors + the output bias, inner product; `bert4rec.inference.index`). This script builds both
indexes over generated catalogues of that shape and times single queries on one thread:

    exact     ExactIndex: one matrix-vector product + top-k
    hnsw      HnswIndex (faiss IndexHNSWFlat, M links, efConstruction), at several efSearch values
    filtered  HnswIndex with a metadata mask passing 25% of the items (graph search with an id
              selector) and 0.5% (exhaustive over the passing items); recall against exact with the
              same mask
    qdrant    QdrantIndex through qdrant-client's local mode (`--kinds ... qdrant`): the client code
              path the Recommender uses against a Qdrant server, but the engine is qdrant-client's
              in-process numpy scan (and its filters a Python loop over the points), so its latency
              is that of local mode, not of a Qdrant server

Item vectors are drawn around 1,000 cluster centres with different lengths (as trained item vectors
are); queries are item vectors plus noise (intent vectors sit near the items they predict).
Writes `<out>/<name>.json` and `<out>/<name>.md`.

    python benchmarks/vector_index.py                       # 100k and 1M items
    python benchmarks/vector_index.py --sizes 100000 1000000 5000000
    python benchmarks/vector_index.py --sizes 100000 --kinds exact qdrant --name vector_index_qdrant_local
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from bench_report import machine, publish

RESULTS = Path(__file__).resolve().parent / "results" / "serving"


def rss_mb() -> float:
    """Resident set size of this process in MiB (from /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def catalogue(n: int, d: int, seed: int) -> np.ndarray:
    """(n + 1, d + 1) float32: row 0 PAD, then item vectors around 1,000 centres with a bias column."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, d)).astype(np.float32)
    out = np.zeros((n + 1, d + 1), dtype=np.float32)
    for start in range(1, n + 1, 500_000):  # in blocks: no float64 temporaries of the whole matrix
        m = min(500_000, n + 1 - start)
        block = centres[rng.integers(0, 1000, m)] + 0.6 * rng.standard_normal((m, d), dtype=np.float32)
        block *= rng.uniform(0.5, 1.5, size=(m, 1)).astype(np.float32)  # item vectors differ in length
        out[start : start + m, :d] = block * 0.2
        out[start : start + m, d] = rng.normal(scale=0.5, size=m)  # output bias
    return out


def queries(vectors: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n, d + 1) intent-like queries [h, 1]: item vectors plus noise."""
    rng = np.random.default_rng(seed)
    d = vectors.shape[1] - 1
    h = vectors[rng.integers(1, len(vectors), n), :d] + 0.1 * rng.standard_normal((n, d), dtype=np.float32)
    return np.hstack([h, np.ones((n, 1), dtype=np.float32)])


def timed(search: Any, qs: np.ndarray, k: int) -> tuple[list[list[int]], dict[str, float]]:
    found, times = [], []
    for q in qs:
        start = time.perf_counter()
        r = search(q, k)
        times.append(time.perf_counter() - start)
        found.append(r.indices.tolist())
    ms = np.asarray(times) * 1000
    return found, {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return round(
        float(np.mean([len(set(f) & set(t)) / max(len(t), 1) for f, t in zip(found, truth, strict=False)])), 4
    )


def bench_qdrant(
    v: np.ndarray,
    qs: np.ndarray,
    masks: dict[str, np.ndarray],
    truth: list[list[int]],
    masked_truth: dict[str, list[list[int]]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """QdrantIndex in qdrant-client's local mode (":memory:"): upload time, memory, latency, recall."""
    import qdrant_client

    from bert4rec.inference.qdrant_index import QdrantIndex

    client = qdrant_client.QdrantClient(":memory:")
    before = rss_mb()
    start = time.perf_counter()
    index = QdrantIndex(v, "ip", {"batch_size": 1024}, client=client)
    build_s = time.perf_counter() - start
    out: dict[str, Any] = {
        "engine": "qdrant-client local mode (:memory:), qdrant-client " + qdrant_client.__version__
        if hasattr(qdrant_client, "__version__")
        else "qdrant-client local mode (:memory:)",
        "build_s": round(build_s, 1),
        "memory_mb": round(rss_mb() - before),
        "max_filter_ids": index.max_filter_ids,
    }
    print(f"qdrant (local mode) uploaded {index.uploaded:,} points in {build_s:.1f} s", flush=True)
    found, out["latency"] = timed(index.search, qs[: args.qdrant_queries], args.k)
    out["recall_at_10"] = recall(found, truth[: args.qdrant_queries])
    out["queries"] = len(found)
    for name, mask in masks.items():
        sub = qs[: args.qdrant_queries // 4]
        f, flat = timed(partial(index.search, mask=mask), sub, args.k)
        out[name] = {
            "latency": flat,
            "recall_at_10": recall(f, masked_truth[name][: len(sub)]),
            "queries": len(sub),
        }
    print(f"qdrant: {json.dumps(out)}", flush=True)
    client.close()
    return out


def bench_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    from bert4rec.inference.index import ExactIndex

    print(f"--- {n:,} items", flush=True)
    base = rss_mb()
    v = catalogue(n, args.dim, args.seed)
    qs = queries(v, args.queries, args.seed + 1)
    rng = np.random.default_rng(args.seed + 2)
    masks = {"filter_25pct": rng.random(n + 1) < 0.25, "filter_0.5pct": rng.random(n + 1) < 0.005}
    data_mb = rss_mb() - base
    out: dict[str, Any] = {
        "n_items": n,
        "dim": args.dim,
        "queries": args.queries,
        "vectors_mb": round(data_mb),
    }

    before = rss_mb()
    start = time.perf_counter()
    exact = ExactIndex(v, metric="ip")
    out["exact"] = {"build_s": round(time.perf_counter() - start, 2), "memory_mb": round(rss_mb() - before)}
    truth, out["exact"]["latency"] = timed(exact.search, qs, args.k)
    masked_truth = {}
    for name, mask in masks.items():
        masked_truth[name], _ = timed(partial(exact.search, mask=mask), qs[: args.queries // 4], args.k)
    del exact
    gc.collect()
    if "qdrant" in args.kinds:
        out["qdrant"] = bench_qdrant(v, qs, masks, truth, masked_truth, args)
        gc.collect()
    if "hnsw" in args.kinds:
        out["hnsw"] = bench_hnsw(v, qs, masks, truth, masked_truth, args)
    del v
    gc.collect()
    return out


def bench_hnsw(
    v: np.ndarray,
    qs: np.ndarray,
    masks: dict[str, np.ndarray],
    truth: list[list[int]],
    masked_truth: dict[str, list[list[int]]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """HnswIndex (faiss) at each efSearch: build time, memory, latency, recall (plain and filtered)."""
    import faiss

    from bert4rec.inference.index import HnswIndex

    faiss.omp_set_num_threads(args.build_threads)
    before = rss_mb()
    start = time.perf_counter()
    hnsw = HnswIndex(v, metric="ip", m=args.m, ef_construction=args.ef_construction)
    build_s = time.perf_counter() - start
    out: dict[str, Any] = {
        "m": args.m,
        "ef_construction": args.ef_construction,
        "build_threads": args.build_threads,
        "build_s": round(build_s, 1),
        "memory_mb": round(rss_mb() - before),
        "by_ef_search": {},
    }
    print(f"hnsw built in {build_s:.1f} s", flush=True)
    faiss.omp_set_num_threads(1)  # one query on one thread, as in a server worker
    for ef in args.ef_search:
        hnsw.ef_search = ef
        found, lat = timed(hnsw.search, qs, args.k)
        row: dict[str, Any] = {"latency": lat, "recall_at_10": recall(found, truth)}
        for name, mask in masks.items():
            sub = qs[: args.queries // 4]

            f, flat = timed(partial(hnsw.search, mask=mask), sub, args.k)
            row[name] = {"latency": flat, "recall_at_10": recall(f, masked_truth[name])}
        out["by_ef_search"][str(ef)] = row
        print(f"ef_search {ef}: {json.dumps(row)}", flush=True)
    del hnsw
    gc.collect()
    return out


def markdown(record: dict[str, Any]) -> str:
    m = record["machine"]
    lines = [
        f"# Vector index: {record['name']}",
        "",
        f"Generated catalogues of {record['dim']}-d item vectors + an output-bias column (inner product, "
        f"the Recommender's model path); {record['queries']} intent-like queries (item vectors + noise), "
        f"top {record['k']}, one query at a time on one thread. Recall@10 is against exact search with the "
        "same mask. Filtered rows: a metadata mask passing 25% of the items (HNSW: graph search with a "
        "faiss id selector) or 0.5% (HNSW: scored exhaustively over the passing items; exact by "
        "construction).",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, numpy {m['numpy']}, faiss {m['faiss']}, "
        f"qdrant-client {m.get('qdrant_client')}, commit {m['git_commit']}.",
        "",
        "| items | index | efSearch | build s | memory MiB | p50 ms | p99 ms | recall@10 "
        "| 25% filter p50 / p99 ms, recall | 0.5% filter p50 / p99 ms, recall |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in record["sizes"]:
        e = r["exact"]
        lines.append(
            f"| {r['n_items']:,} | exact | - | {e['build_s']} | {e['memory_mb']} "
            f"| {e['latency']['p50_ms']:.2f} | {e['latency']['p99_ms']:.2f} | 1.0000 | - | - |"
        )
        qd = r.get("qdrant")
        if qd is not None:
            lat = qd["latency"]
            cells = [f"{r['n_items']:,}", "qdrant (local mode)", "-", qd["build_s"], qd["memory_mb"]]
            cells += [f"{lat['p50_ms']:.2f}", f"{lat['p99_ms']:.2f}", f"{qd['recall_at_10']:.4f}"]
            for f in (qd["filter_25pct"], qd["filter_0.5pct"]):
                fl = f["latency"]
                cells.append(f"{fl['p50_ms']:.2f} / {fl['p99_ms']:.2f}, {f['recall_at_10']:.3f}")
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        h = r.get("hnsw", {"by_ef_search": {}})
        for ef, row in h["by_ef_search"].items():
            f25, f05 = row["filter_25pct"], row["filter_0.5pct"]
            lat = row["latency"]
            cells = [f"{r['n_items']:,}", f"hnsw M={h['m']}", ef, h["build_s"], h["memory_mb"]]
            cells += [f"{lat['p50_ms']:.2f}", f"{lat['p99_ms']:.2f}", f"{row['recall_at_10']:.4f}"]
            for f in (f25, f05):
                fl = f["latency"]
                cells.append(f"{fl['p50_ms']:.2f} / {fl['p99_ms']:.2f}, {f['recall_at_10']:.3f}")
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        f"Build threads: {record['build_threads']}. Memory: resident set growth while building.",
        "",
    ]
    if any("qdrant" in r for r in record["sizes"]):
        qd = next(r["qdrant"] for r in record["sizes"] if "qdrant" in r)
        lines += [
            f"qdrant (local mode): `QdrantIndex` through qdrant-client's local mode (`:memory:`), "
            f"{qd['queries']} queries ({qd['filter_25pct']['queries']} per filter). Build = upload of every "
            "point in batches of 1,024. This measures the client code path the Recommender uses against a "
            "Qdrant server, over qdrant-client's in-process engine: a numpy scan of every vector per query, "
            "and filters evaluated by a Python loop over the points. It says nothing about a Qdrant "
            "server's speed (HNSW in Rust, sharded); none was reachable from this machine. With "
            f"max_filter_ids {qd['max_filter_ids']:,} (local mode's default: its has_id check copies the id "
            "list for every point) a filter is applied in the client: the unfiltered ranking is read page "
            "by page and the passing items kept.",
            "",
        ]
    if record.get("note"):
        lines += [f"Note: {record['note']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=400)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--m", type=int, default=32, help="HNSW links per node")
    p.add_argument("--ef-construction", type=int, default=100)
    p.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="vector_index")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--note", default="")
    p.add_argument(
        "--kinds",
        nargs="+",
        default=["exact", "hnsw"],
        choices=["exact", "hnsw", "qdrant"],
        help="indexes to run (exact always runs: it is the recall reference)",
    )
    p.add_argument("--qdrant-queries", type=int, default=200, help="queries for qdrant (local mode is slow)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    sizes = [bench_size(n, args) for n in args.sizes]
    record = {
        "name": args.name,
        "dim": args.dim,
        "queries": args.queries,
        "k": args.k,
        "build_threads": args.build_threads,
        "kinds": args.kinds,
        "sizes": sizes,
        "machine": machine(numpy="numpy", faiss="faiss-cpu", qdrant_client="qdrant-client"),
    }
    return publish(args.out, args.name, record, markdown, args.note)


if __name__ == "__main__":
    sys.exit(main())
