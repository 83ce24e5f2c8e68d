"""Benchmark: serving latency of each query type, in-process and over HTTP, plus a sustained load.

1. in-process: `Recommender` calls, one at a time (p50 / p99 / mean per query type);
2. HTTP: `bert4rec serve` in a subprocess on loopback, an httpx client in another process, one
   request at a time per query type (keep-alive);
3. sustained load: `--concurrency` client threads sending a mix of all four query types until
   `--load-seconds` or `--load-requests` runs out; reports throughput, errors and latency.

Queries are drawn with a fixed seed from the model's own users, items and stored sequences (sessions
are the last 1..max_history items of a user). Nothing is trained here: point it at a saved model.
Writes `<out>/<name>.json` and `<out>/<name>.md`.

    python benchmarks/serve_latency.py --model runs/ml1m/bert4rec/model
    python benchmarks/serve_latency.py --model runs/tiny/bert4rec/model --requests 20 --load-seconds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# results are grouped by study: benchmarks/results/<study>/ (index: docs/benchmarks/index.md)
RESULTS = Path(__file__).resolve().parent / "results" / "serving"
QUERY_TYPES = ("item_to_item", "user_to_item", "contextual", "sequential")


# ---------------------------------------------------------------- queries
def make_queries(rec: Any, n: int, k: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """`n` API request bodies per query type, drawn from the model's users, items and sequences."""
    rng = random.Random(seed)
    items, users = list(rec.vocab.item_ids), list(rec.vocab.user_ids)
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in QUERY_TYPES}
    for _ in range(n):
        user = rng.choice(users)
        history = rec.history(user)
        out["item_to_item"].append({"query_type": "item_to_item", "item_id": rng.choice(items), "top_k": k})
        out["user_to_item"].append({"query_type": "user_to_item", "user_id": user, "top_k": k})
        out["contextual"].append(
            {"query_type": "contextual", "user_id": user, "item_id": rng.choice(items), "top_k": k}
        )
        length = rng.randint(1, min(len(history), rec.max_history)) if history else 1
        session = history[-length:] if history else [rng.choice(items)]
        out["sequential"].append({"query_type": "sequential", "item_ids": session, "top_k": k})
    return out


def call_recommender(rec: Any, q: dict[str, Any]) -> Any:
    """The in-process equivalent of one POST /recommend body."""
    kind, k = q["query_type"], q["top_k"]
    if kind == "item_to_item":
        return rec.item_to_item(q["item_id"], k=k)
    if kind == "user_to_item":
        return rec.user_to_item(q["user_id"], k=k)
    if kind == "contextual":
        return rec.contextual(q["user_id"], q["item_id"], k=k)
    return rec.sequential(q["item_ids"], k=k)


def summary(latencies_s: list[float]) -> dict[str, float]:
    """p50 / p99 / mean / max in milliseconds."""
    ms = sorted(x * 1000 for x in latencies_s)
    if not ms:
        return {"n": 0}

    def pick(q: float) -> float:  # nearest-rank percentile
        return ms[min(len(ms) - 1, round(q * (len(ms) - 1)))]

    return {
        "n": len(ms),
        "p50_ms": round(pick(0.50), 3),
        "p99_ms": round(pick(0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "max_ms": round(ms[-1], 3),
    }


def bench_in_process(rec: Any, queries: dict[str, list[dict[str, Any]]], warmup: int) -> dict[str, Any]:
    out = {}
    for kind, qs in queries.items():
        for q in qs[:warmup]:
            call_recommender(rec, q)
        times = []
        for q in qs[warmup:]:
            start = time.perf_counter()
            call_recommender(rec, q)
            times.append(time.perf_counter() - start)
        out[kind] = summary(times)
    return out


# ---------------------------------------------------------------- HTTP client (runs in its own process)
def run_client(spec_path: Path, result_path: Path) -> None:
    import httpx

    spec = json.loads(spec_path.read_text())
    url, queries, warmup = spec["url"], spec["queries"], spec["warmup"]
    result: dict[str, Any] = {"sequential_requests": {}, "errors": {}}
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for kind, qs in queries.items():
            for q in qs[:warmup]:
                client.post("/recommend", json=q)
            times, errors = [], 0
            for q in qs[warmup:]:
                start = time.perf_counter()
                r = client.post("/recommend", json=q)
                times.append(time.perf_counter() - start)
                errors += r.status_code != 200
            result["sequential_requests"][kind] = {**summary(times), "errors": errors}
    result["load"] = run_load(url, queries, spec["concurrency"], spec["load_seconds"], spec["load_requests"])
    result_path.write_text(json.dumps(result))


def run_load(
    url: str, queries: dict[str, list[dict[str, Any]]], concurrency: int, seconds: float, max_requests: int
) -> dict[str, Any]:
    """`concurrency` threads, each with its own keep-alive connection, until time or budget runs out."""
    import httpx

    mix = [q for qs in zip(*queries.values(), strict=False) for q in qs]  # round-robin over query types
    lock = threading.Lock()
    state = {"sent": 0}
    times: list[float] = []
    statuses: dict[str, int] = {}
    failures: list[str] = []
    deadline = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=30.0) as client:
            i = offset
            while time.perf_counter() < deadline:
                with lock:
                    if state["sent"] >= max_requests:
                        return
                    state["sent"] += 1
                q = mix[i % len(mix)]
                i += concurrency
                start = time.perf_counter()
                try:
                    r = client.post("/recommend", json=q)
                    code = str(r.status_code)
                except httpx.HTTPError as err:
                    code = type(err).__name__
                    with lock:
                        failures.append(f"{code}: {err}")
                elapsed = time.perf_counter() - start
                with lock:
                    times.append(elapsed)
                    statuses[code] = statuses.get(code, 0) + 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    errors = sum(n for code, n in statuses.items() if code != "200")
    return {
        "concurrency": concurrency,
        "seconds_limit": seconds,
        "requests_limit": max_requests,
        "wall_s": round(wall, 3),
        "requests": len(times),
        "throughput_rps": round(len(times) / wall, 1) if wall else 0.0,
        "errors": errors,
        "status_counts": statuses,
        "first_failures": failures[:5],
        "latency": summary(times),
    }


# ---------------------------------------------------------------- server (subprocess)
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    model: Path,
    port: int,
    text_cold_start: bool,
    torch_threads: int,
    timeout: float,
    extra_args: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """`bert4rec serve` in a subprocess (more `serve` options in `extra_args`), once /health answers."""
    import httpx

    cmd = [sys.executable, "-m", "bert4rec.cli", "serve", "--model", str(model), "--port", str(port)]
    cmd += ["--log-level", "warning", "--text-cold-start" if text_cold_start else "--no-text-cold-start"]
    cmd += ["--torch-threads", str(torch_threads), *extra_args]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.stdout.read().decode(errors="replace") if server.stdout else ""
            raise RuntimeError(f"the server exited with code {server.returncode}:\n{output}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"the server did not answer /health within {timeout:.0f} s")


def bench_http(
    model: Path, queries: dict[str, list[dict[str, Any]]], args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any]]:
    import httpx

    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(model, port, args.text_cold_start, args.torch_threads, args.startup_timeout)
    try:
        health = httpx.get(f"{url}/health").json()
        with tempfile.TemporaryDirectory() as tmp:
            spec, result = Path(tmp) / "spec.json", Path(tmp) / "result.json"
            spec.write_text(
                json.dumps(
                    {
                        "url": url,
                        "queries": queries,
                        "warmup": args.warmup,
                        "concurrency": args.concurrency,
                        "load_seconds": args.load_seconds,
                        "load_requests": args.load_requests,
                    }
                )
            )
            client_cmd = [
                sys.executable,
                __file__,
                "--client-spec",
                str(spec),
                "--client-result",
                str(result),
            ]
            subprocess.run(client_cmd, check=True, timeout=args.load_seconds + 600)
            return json.loads(result.read_text()), health
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


# ---------------------------------------------------------------- report
def machine() -> dict[str, Any]:
    import torch

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "git_commit": commit or None,
    }


def markdown(record: dict[str, Any]) -> str:
    m, h = record["machine"], record["model"]
    lines = [
        f"# Serving latency: {record['name']}",
        "",
        f"Model `{record['model_path']}`: {h['model_type']}, {h['n_items']:,} items, {h['n_users']:,} users, "
        f"max_history {h['max_history']}, fingerprint `{h['fingerprint']}`. top_k = {record['top_k']}, "
        f"{record['requests']} requests per query type after {record['warmup']} warm-up ones.",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']} "
        f"({m['torch_threads']} threads), commit {m['git_commit']}. "
        "Server and client share this machine (loopback).",
        "",
        "| query type | in-process p50 ms | in-process p99 ms | HTTP p50 ms | HTTP p99 ms | HTTP errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in QUERY_TYPES:
        a, b = record["in_process"][kind], record["http"][kind]
        lines.append(
            f"| {kind} | {a['p50_ms']:.2f} | {a['p99_ms']:.2f} | {b['p50_ms']:.2f} | {b['p99_ms']:.2f} "
            f"| {b['errors']} |"
        )
    load = record["load"]
    lat = load["latency"]
    lines += [
        "",
        f"Sustained load (mixed query types, {load['concurrency']} client threads, limits "
        f"{load['seconds_limit']} s / {load['requests_limit']} requests): {load['requests']:,} requests in "
        f"{load['wall_s']:.1f} s = **{load['throughput_rps']:.1f} req/s**, {load['errors']} errors, "
        f"latency p50 {lat.get('p50_ms', float('nan')):.2f} ms / "
        f"p99 {lat.get('p99_ms', float('nan')):.2f} ms.",
        "",
    ]
    if record.get("note"):
        lines += [f"Note: {record['note']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="model folder written by `bert4rec train`")
    p.add_argument("--requests", type=int, default=500, help="timed requests per query type")
    p.add_argument("--warmup", type=int, default=20, help="untimed requests per query type first")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=4, help="client threads in the load run")
    p.add_argument("--load-seconds", type=float, default=30.0, help="time limit of the load run")
    p.add_argument("--load-requests", type=int, default=20_000, help="request limit of the load run")
    p.add_argument("--port", type=int, default=0, help="0 = a free port")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="intra-op threads, in-process and in the server (serve default)",
    )
    p.add_argument("--text-cold-start", action="store_true", help="serve with MiniLM loaded")
    p.add_argument("--startup-timeout", type=float, default=180.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="serve_latency", help="results file name (without extension)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--note", default="", help="free text added to the report (e.g. which data)")
    p.add_argument("--client-spec", type=Path, help=argparse.SUPPRESS)  # internal: the client process
    p.add_argument("--client-result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.client_spec:
        run_client(args.client_spec, args.client_result)
        return 0
    if args.model is None:
        p.error("--model is required (a folder written by `bert4rec train`)")

    import torch

    from bert4rec.inference.recommender import Recommender

    torch.set_num_threads(args.torch_threads)
    rec = Recommender.load(args.model)
    queries = make_queries(rec, args.requests + args.warmup, args.top_k, args.seed)
    print(f"in-process: {args.requests} requests per query type ...", flush=True)
    in_process = bench_in_process(rec, queries, args.warmup)
    print("HTTP (server and client in subprocesses) ...", flush=True)
    http, health = bench_http(args.model, queries, args)
    record = {
        "name": args.name,
        "model_path": str(args.model),
        "model": health,
        "top_k": args.top_k,
        "requests": args.requests,
        "warmup": args.warmup,
        "in_process": in_process,
        "http": http["sequential_requests"],
        "load": http["load"],
        "machine": machine(),
        "note": args.note,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    from bert4rec.evaluation.results import atomic_write_text

    atomic_write_text(args.out / f"{args.name}.json", json.dumps(record, indent=2))
    report = markdown(record)
    atomic_write_text(args.out / f"{args.name}.md", report)
    print(report)
    print(f"wrote {args.out / f'{args.name}.json'} and {args.out / f'{args.name}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
