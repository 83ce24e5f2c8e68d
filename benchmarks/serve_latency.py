"""Benchmark: serving throughput and latency per query type, in-process and over HTTP under load.

1. in-process: `Recommender` calls one at a time, per query type (p50 / p99 / mean), with the user
   intents precomputed (the served path) and without (the plain path, one model call per query);
2. HTTP load: `bert4rec serve` in a subprocess on loopback (`--workers`, `--index`, `--backend`), and
   a load generator in another process: an asyncio client holding `--concurrency` keep-alive
   connections, each sending its next request as soon as the previous answer is read (closed loop,
   like wrk), for `--load-seconds`. The requests follow the issue's mix: 30% user_to_item,
   20% contextual, 30% sequential (sessions of 1-50 items), 20% item_to_item. Reported per run:
   requests per second, errors, latency p50 / p99 overall and per query type, server CPU seconds per
   request (all server processes, from /proc), the load generator's own CPU, and each server
   process's RSS and PSS (PSS splits shared pages between the processes that map them).

Queries are drawn with a fixed seed from the model's own users, items and stored sequences. Nothing
is trained here: point it at a saved model. Writes `<out>/<name>.json` and `<out>/<name>.md`.

    python benchmarks/serve_latency.py --model runs/ml1m/bert4rec/model --workers 1 2 --concurrency 8 32
    python benchmarks/serve_latency.py --model runs/tiny/bert4rec/model --requests 20 --load-seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_report import machine, publish

# results are grouped by study: benchmarks/results/<study>/ (index: docs/benchmarks/index.md)
RESULTS = Path(__file__).resolve().parent / "results" / "serving"
QUERY_TYPES = ("item_to_item", "user_to_item", "contextual", "sequential")
MIX = {"user_to_item": 0.3, "contextual": 0.2, "sequential": 0.3, "item_to_item": 0.2}
MAX_SESSION = 50


# ---------------------------------------------------------------- queries
def make_queries(rec: Any, n: int, k: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """`n` API request bodies per query type, drawn from the model's users, items and sequences
    (sessions: the last 1..50 items of a user's history)."""
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
        length = rng.randint(1, min(len(history), MAX_SESSION)) if history else 1
        session = history[-length:] if history else [rng.choice(items)]
        out["sequential"].append({"query_type": "sequential", "session_items": session, "top_k": k})
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
    return rec.sequential(q["session_items"], k=k)


def summary(latencies_s: list[float]) -> dict[str, float]:
    """n, p50 / p99 / mean / max in milliseconds."""
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


# ---------------------------------------------------------------- load generator (its own process)
def request_bytes(body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        "POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _connection(
    host: str, port: int, mix: list[tuple[str, bytes]], offset: int, stride: int, deadline: float, out: Any
) -> None:
    """One keep-alive connection: send, read the whole answer, record, repeat until the deadline."""
    reader = writer = None
    i = offset
    while time.perf_counter() < deadline:
        kind, req = mix[i % len(mix)]
        i += stride
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12].decode()
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
            status = type(err).__name__
            if writer is not None:
                writer.close()
            reader = writer = None
        out.append((kind, status, time.perf_counter() - start))
    if writer is not None:
        writer.close()


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    """Closed-loop load: `concurrency` connections for `seconds`; per-type latency and status counts."""
    mix = [(kind, request_bytes(body)) for kind, body in spec["mix"]]
    concurrency, seconds = spec["concurrency"], spec["seconds"]
    records: list[tuple[str, str, float]] = []

    async def main() -> float:
        # warm-up: every connection opened and a few requests answered before timing starts
        warm: list[tuple[str, str, float]] = []
        until = time.perf_counter() + spec["warmup_seconds"]
        await asyncio.gather(
            *(
                _connection(spec["host"], spec["port"], mix, c, concurrency, until, warm)
                for c in range(concurrency)
            )
        )
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(
            *(
                _connection(spec["host"], spec["port"], mix, c + 7919, concurrency, deadline, records)
                for c in range(concurrency)
            )
        )
        return time.perf_counter() - start

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall = asyncio.run(main())
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    statuses: dict[str, int] = {}
    for _, status, _ in records:
        statuses[status] = statuses.get(status, 0) + 1
    errors = sum(n for status, n in statuses.items() if status != "200")
    client_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "requests": len(records),
        "throughput_rps": round(len(records) / wall, 1) if wall else 0.0,
        "errors": errors,
        "status_counts": statuses,
        "latency": summary([t for _, _, t in records]),
        "by_type": {kind: summary([t for k, _, t in records if k == kind]) for kind in QUERY_TYPES},
        "client_cpu_s": round(client_cpu, 2),
    }


# ---------------------------------------------------------------- server processes (/proc)
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (uvicorn's workers, multiprocessing helpers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = [pid], [pid]
    while frontier:
        frontier = [c for c, p in parents.items() if p in frontier]
        out += frontier
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes (0 for one that has gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def memory(pid: int) -> dict[str, Any]:
    """RSS and PSS in MiB, and the command line, of one process."""
    out: dict[str, Any] = {"pid": pid}
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        out["cmd"] = cmd.strip()[:120]
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Rss", "Pss"):
                out[f"{key.lower()}_mb"] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


def start_server(
    model: Path,
    port: int,
    *,
    text_cold_start: bool,
    torch_threads: int,
    timeout: float,
    workers: int = 1,
    extra_args: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """`bert4rec serve` in a subprocess (more `serve` options in `extra_args`), once /health answers
    (with several workers: once all of them run)."""
    import httpx

    cmd = [sys.executable, "-m", "bert4rec.cli", "serve", "--model", str(model), "--port", str(port)]
    cmd += ["--log-level", "warning", "--text-cold-start" if text_cold_start else "--no-text-cold-start"]
    cmd += ["--torch-threads", str(torch_threads), "--workers", str(workers), *extra_args]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.stdout.read().decode(errors="replace") if server.stdout else ""
            raise RuntimeError(f"the server exited with code {server.returncode}:\n{output}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                # with several workers, /health answers when the first is up: wait for all of them
                workers_up = len(descendants(server.pid)) - 1
                if workers == 1 or workers_up >= workers:
                    time.sleep(2.0 if workers > 1 else 0.0)
                    return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"the server did not answer /health within {timeout:.0f} s")


def bench_http(
    model: Path, mix: list[tuple[str, dict[str, Any]]], args: argparse.Namespace, workers: int
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """One server with `workers` processes; one load run per `--concurrency` value."""
    import httpx

    port = args.port or free_port()
    server = start_server(
        model,
        port,
        text_cold_start=args.text_cold_start,
        torch_threads=args.torch_threads,
        timeout=args.startup_timeout,
        workers=workers,
        extra_args=["--index", args.index, "--backend", args.backend],
    )
    runs = []
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        for concurrency in args.concurrency:
            pids = descendants(server.pid)
            spec = {
                "host": "127.0.0.1",
                "port": port,
                "mix": mix,
                "concurrency": concurrency,
                "seconds": args.load_seconds,
                "warmup_seconds": args.warmup_seconds,
            }
            with tempfile.TemporaryDirectory() as tmp:
                spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
                spec_path.write_text(json.dumps(spec))
                cpu0 = cpu_seconds(pids)
                client = [sys.executable, __file__, "--client-spec", str(spec_path), "--client-result"]
                subprocess.run([*client, str(result_path)], check=True, timeout=args.load_seconds + 300)
                cpu1 = cpu_seconds(pids)
                load = json.loads(result_path.read_text())
            # server CPU over warm-up + timed run, per request answered in both
            warm_share = (args.warmup_seconds + args.load_seconds) / args.load_seconds
            load["server_cpu_s"] = round(cpu1 - cpu0, 2)
            load["server_cpu_ms_per_request"] = (
                round(1000 * (cpu1 - cpu0) / (load["requests"] * warm_share), 3) if load["requests"] else None
            )
            load["workers"] = workers
            runs.append(load)
            print(
                f"workers {workers}, {concurrency} connections: {load['throughput_rps']} req/s, "
                f"p99 {load['latency'].get('p99_ms')} ms, {load['errors']} errors",
                flush=True,
            )
        processes = [memory(pid) for pid in descendants(server.pid)]
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    return runs, health, processes


def weighted_mix(
    queries: dict[str, list[dict[str, Any]]], n: int, seed: int
) -> list[tuple[str, dict[str, Any]]]:
    """`n` (query type, body) pairs drawn with the MIX weights."""
    rng = random.Random(seed)
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=n)
    return [(kind, rng.choice(queries[kind])) for kind in kinds]


# ---------------------------------------------------------------- report
def markdown(record: dict[str, Any]) -> str:
    m, h = record["machine"], record["model"]
    lines = [
        f"# Serving throughput: {record['name']}",
        "",
        f"Model `{record['model_path']}`: {h['model_type']}, {h['n_items']:,} items, {h['n_users']:,} users, "
        f"max_history {h['max_history']}, fingerprint `{h['fingerprint']}`. top_k = {record['top_k']}; "
        f"server: backend {record['backend']}, index {record['index']}, {record['torch_threads']} torch "
        "thread(s) per worker.",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']}, commit {m['git_commit']}, "
        f"load average at the end {' '.join(map(str, m['load_average_at_end'] or []))}. Server, workers "
        "and load generator share this machine (loopback).",
        "",
        "In-process, one call at a time (ms):",
        "",
        "| query type | p50 | p99 | plain path p50 | plain path p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind in QUERY_TYPES:
        a, b = record["in_process"][kind], record["in_process_plain"][kind]
        lines.append(
            f"| {kind} | {a['p50_ms']:.2f} | {a['p99_ms']:.2f} | {b['p50_ms']:.2f} | {b['p99_ms']:.2f} |"
        )
    lines += [
        "",
        "(plain path: user intents not precomputed, one model call per user_to_item.)",
        "",
        f"HTTP load, closed loop for {record['load_seconds']} s after {record['warmup_seconds']} s of "
        "warm-up; mix 30% user_to_item, 20% contextual, 30% sequential (1-50 items), 20% item_to_item:",
        "",
        "| workers | connections | req/s | errors | p50 ms | p99 ms | user_to_item p50/p99 "
        "| contextual p50/p99 | sequential p50/p99 | item_to_item p50/p99 | server CPU ms/req "
        "| client CPU s |",
        "|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|",
    ]
    for run in record["load"]:
        lat = run["latency"]
        cells = [run["workers"], run["concurrency"], f"{run['throughput_rps']:.0f}", run["errors"]]
        cells += [f"{lat.get('p50_ms', float('nan')):.1f}", f"{lat.get('p99_ms', float('nan')):.1f}"]
        for kind in ("user_to_item", "contextual", "sequential", "item_to_item"):
            t = run["by_type"][kind]
            cells.append(f"{t.get('p50_ms', float('nan')):.1f} / {t.get('p99_ms', float('nan')):.1f}")
        cells += [run["server_cpu_ms_per_request"], run["client_cpu_s"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "Server processes after the load (MiB; PSS counts shared pages once across processes):", ""]
    lines += ["| workers | pid | RSS | PSS | command |", "|---:|---:|---:|---:|---|"]
    for workers, procs in record["processes"].items():
        for p in procs:
            lines.append(
                f"| {workers} | {p['pid']} | {p.get('rss_mb', '?')} | {p.get('pss_mb', '?')} "
                f"| `{p.get('cmd', '')[:70]}` |"
            )
    lines.append("")
    if record.get("note"):
        lines += [f"Note: {record['note']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="model folder written by `bert4rec train`")
    p.add_argument("--requests", type=int, default=300, help="in-process timed requests per query type")
    p.add_argument("--warmup", type=int, default=20, help="untimed in-process requests per query type first")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="server processes (one run each)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[8, 32], help="connections (one run each)")
    p.add_argument("--load-seconds", type=float, default=20.0, help="timed part of each load run")
    p.add_argument("--warmup-seconds", type=float, default=3.0, help="untimed load before each run")
    p.add_argument("--index", default="auto", help="serve --index")
    p.add_argument("--backend", default="torch", help="serve --backend")
    p.add_argument("--port", type=int, default=0, help="0 = a free port")
    p.add_argument("--torch-threads", type=int, default=1, help="intra-op threads, in-process and per worker")
    p.add_argument("--text-cold-start", action="store_true", help="serve with MiniLM loaded")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="serve_throughput", help="results file name (without extension)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--note", default="", help="free text added to the report (e.g. which data)")
    p.add_argument("--client-spec", type=Path, help=argparse.SUPPRESS)  # internal: the load generator
    p.add_argument("--client-result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.client_spec:
        args.client_result.write_text(json.dumps(run_load(json.loads(args.client_spec.read_text()))))
        return 0
    if args.model is None:
        p.error("--model is required (a folder written by `bert4rec train`)")

    import torch

    from bert4rec.inference.recommender import Recommender

    torch.set_num_threads(args.torch_threads)
    rec = Recommender.load(args.model, index=args.index, precompute=True)  # as `serve` loads it
    queries = make_queries(rec, args.requests + args.warmup, args.top_k, args.seed)
    print(f"in-process: {args.requests} requests per query type ...", flush=True)
    in_process = bench_in_process(rec, queries, args.warmup)
    rec.user_intents = None  # the plain path: every user_to_item runs the model
    in_process_plain = bench_in_process(rec, queries, args.warmup)
    del rec
    mix = weighted_mix(queries, 4000, args.seed + 1)
    load, processes, health = [], {}, {}
    for workers in args.workers:
        print(f"HTTP load with {workers} worker(s) ...", flush=True)
        runs, health, procs = bench_http(args.model, mix, args, workers)
        load += runs
        processes[str(workers)] = procs
    record = {
        "name": args.name,
        "model_path": str(args.model),
        "model": health,
        "top_k": args.top_k,
        "backend": args.backend,
        "index": args.index,
        "torch_threads": args.torch_threads,
        "requests": args.requests,
        "warmup": args.warmup,
        "load_seconds": args.load_seconds,
        "warmup_seconds": args.warmup_seconds,
        "in_process": in_process,
        "in_process_plain": in_process_plain,
        "load": load,
        "processes": processes,
        "machine": machine(torch="torch"),
    }
    return publish(args.out, args.name, record, markdown, args.note)


if __name__ == "__main__":
    sys.exit(main())
