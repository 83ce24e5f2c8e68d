"""Benchmark: `bert4rec serve` offered more load than it can serve, with and without its limits.

1. capacity: a closed loop of `--capacity-clients` connections against the server with no limits
   for `--capacity-seconds` gives the served rate (requests/s);
2. overload: for each configuration (limits off = the behaviour before issue 15; the defaults;
   a tight concurrency limit) a fresh server in a subprocess on loopback is offered
   `--overload` x capacity requests/s of POST /recommend for `--seconds` (open loop: arrivals
   do not wait for answers), while a probe sends GET /health every 100 ms. Then the client waits
   at most `--drain-seconds` for outstanding answers; those still open are counted unfinished;
3. big bodies: with the default limits, `--big-clients` connections send ~0.9 MB bodies (parsed,
   then refused 422) and 40 MB ones (refused 413 from their Content-Length) for `--seconds`,
   while the probe measures /health.

Per configuration: offered and answered requests, status counts (200 served, 503 shed, 504 timed
out), transport errors, unfinished, latency p50 / p99 of served and of shed answers, /health p50 /
p99. The client runs in its own process (plain asyncio streams: keep-alive HTTP/1.1 connections).
Writes `<out>/<name>.json` and `.md`.

    python benchmarks/serve_overload.py --model runs/ml1m/bert4rec/model
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import machine, publish  # noqa: E402
from serve_latency import free_port, make_queries, start_server, summary  # noqa: E402

# results are grouped by study: benchmarks/results/<study>/ (index: docs/benchmarks/index.md)
RESULTS = Path(__file__).resolve().parent / "results" / "serving"


# ---------------------------------------------------------------- client (its own process)
class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a client that costs tens of
    microseconds per request, so that the server, not the client, is what runs out (httpx costs
    about a millisecond per request, which on a shared 2-core machine throttles the offered load)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> int:
        """The status code; reconnects when the server closed the connection."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        try:
            self.writer.write(head.encode() + b"\r\n" + body)
            await self.writer.drain()
            response = await self.reader.readuntil(b"\r\n\r\n")
            status = int(response[9:12])
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", response)
            await self.reader.readexactly(int(length.group(1)) if length else 0)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.close()
            raise
        if re.search(rb"(?i)\r\nconnection: *close", response):
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def probe_health(host: str, port: int, stop: asyncio.Event, out: dict[str, Any]) -> None:
    """GET /health every 100 ms until `stop`; latencies and non-200 answers into `out`."""
    connection = Connection(host, port)
    while not stop.is_set():
        start = time.perf_counter()
        try:
            status = await asyncio.wait_for(connection.request("GET", "/health"), timeout=30)
            out["health_times"].append(time.perf_counter() - start)
            out["health_failures"] += status != 200
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            connection.close()
            out["health_failures"] += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.1)
    connection.close()


async def offer(
    url: str, bodies: list[bytes], rate: float, seconds: float, drain: float, connections: int
) -> dict[str, Any]:
    """Open loop: a request falls due every 1/rate s for `seconds`; `connections` keep-alive
    connections take them in order. Latency runs from the moment a request fell due, so time spent
    waiting for a free connection counts (no coordinated omission)."""
    host, port = url.removeprefix("http://").split(":")
    statuses: dict[str, int] = {}
    times: dict[str, list[float]] = {}
    failures: list[str] = []
    health: dict[str, Any] = {"health_times": [], "health_failures": 0}
    due: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        connection = Connection(host, int(port))
        while (job := await due.get()) is not None:
            fell_due, body = job
            try:
                code = str(await connection.request("POST", "/recommend", body))
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
                code = type(err).__name__
                if len(failures) < 5:
                    failures.append(f"{code}: {err}")
            statuses[code] = statuses.get(code, 0) + 1
            times.setdefault(code, []).append(loop.time() - fell_due)
        connection.close()

    stop = asyncio.Event()
    probe = asyncio.create_task(probe_health(host, int(port), stop, health))
    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    begin = loop.time()
    offered = 0
    while (when := begin + offered / rate) < begin + seconds:
        if when > loop.time():
            await asyncio.sleep(when - loop.time())
        due.put_nowait((when, bodies[offered % len(bodies)]))
        offered += 1
    offered_for = loop.time() - begin
    deadline = loop.time() + drain
    while not due.empty() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    unfinished = due.qsize()
    while not due.empty():  # what was never sent counts as unfinished
        due.get_nowait()
    for _ in workers:
        due.put_nowait(None)
    _, late = await asyncio.wait(workers, timeout=max(1.0, deadline - loop.time()))
    for task in late:  # requests still waiting for their answer at the deadline
        task.cancel()
    unfinished += len(late)
    stop.set()
    await probe
    return {
        "offered": offered,
        "offered_rate_rps": round(offered / offered_for, 1) if offered_for else 0.0,
        "connections": connections,
        "answered": sum(statuses.values()),
        "unfinished": unfinished,
        "status_counts": statuses,
        "served_latency": summary(times.get("200", [])),
        "shed_latency": summary(times.get("503", [])),
        "timed_out_latency": summary(times.get("504", [])),
        "first_failures": failures,
        "health": {**summary(health["health_times"]), "failures": health["health_failures"]},
    }


async def closed_loop(url: str, bodies: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    """`clients` connections each sending the next request when the last is answered."""
    host, port = url.removeprefix("http://").split(":")
    count = errors = 0
    warm = Connection(host, int(port))
    for body in bodies[:20]:  # the first requests pay for warm-up
        await warm.request("POST", "/recommend", body)
    warm.close()
    deadline = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal count, errors
        connection = Connection(host, int(port))
        i = offset
        while time.perf_counter() < deadline:
            status = await connection.request("POST", "/recommend", bodies[i % len(bodies)])
            count += 1
            errors += status != 200
            i += clients
        connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    wall = time.perf_counter() - start
    return {"clients": clients, "requests": count, "errors": errors, "throughput_rps": round(count / wall, 1)}


async def big_bodies(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """`clients` connections alternating a ~0.9 MB body (parsed, then refused 422: too many ids) and
    a 40 MB one (refused 413 by its Content-Length), while the probe measures /health."""
    import httpx

    parsed = json.dumps(
        {"query_type": "sequential", "session_items": list(range(130_000))}
    ).encode()  # < 1 MiB
    huge = b"[" + b"1," * 20_000_000 + b"1]"
    statuses: dict[str, int] = {}
    times: dict[str, list[float]] = {}
    health: dict[str, Any] = {"health_times": [], "health_failures": 0}
    deadline = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
            i = offset
            while time.perf_counter() < deadline:
                body = parsed if i % 2 == 0 else huge
                start = time.perf_counter()
                try:
                    response = await client.post(
                        "/recommend", content=body, headers={"content-type": "application/json"}
                    )
                    code = str(response.status_code)
                except httpx.HTTPError:
                    # a 413 sent before the body was read closes the connection: a client still
                    # sending sees that instead of the answer
                    code = "closed early"
                key = f"{code} ({len(body) // 1000:,} kB)"
                statuses[key] = statuses.get(key, 0) + 1
                times.setdefault(key, []).append(time.perf_counter() - start)
                i += 1

    host, port = url.removeprefix("http://").split(":")
    stop = asyncio.Event()
    probe = asyncio.create_task(probe_health(host, int(port), stop, health))
    await asyncio.gather(*(worker(i) for i in range(clients)))
    stop.set()
    await probe
    return {
        "clients": clients,
        "body_bytes": {"parsed": len(parsed), "refused_by_length": len(huge)},
        "status_counts": statuses,
        "latency": {key: summary(value) for key, value in times.items()},
        "health": {**summary(health["health_times"]), "failures": health["health_failures"]},
    }


def run_client(spec_path: Path, result_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    bodies = [json.dumps(q).encode() for q in spec["queries"]]
    if spec["mode"] == "capacity":
        result = asyncio.run(closed_loop(spec["url"], bodies, spec["clients"], spec["seconds"]))
    elif spec["mode"] == "overload":
        result = asyncio.run(
            offer(spec["url"], bodies, spec["rate"], spec["seconds"], spec["drain"], spec["connections"])
        )
    else:
        result = asyncio.run(big_bodies(spec["url"], spec["clients"], spec["seconds"]))
    result_path.write_text(json.dumps(result))


# ---------------------------------------------------------------- driver
def with_server(
    model: Path, serve_args: list[str], spec: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """A fresh server with `serve_args`, one client process running `spec`; the client's result."""
    port = free_port()
    server = start_server(
        model,
        port,
        text_cold_start=False,
        torch_threads=args.torch_threads,
        timeout=args.startup_timeout,
        extra_args=serve_args,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
            spec_path.write_text(json.dumps({**spec, "url": f"http://127.0.0.1:{port}"}))
            cmd = [
                sys.executable,
                __file__,
                "--client-spec",
                str(spec_path),
                "--client-result",
                str(result_path),
            ]
            budget = spec.get("seconds", 0) + spec.get("drain", 0) + 120
            subprocess.run(cmd, check=True, timeout=budget)
            return json.loads(result_path.read_text())
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


CONFIGS = {
    "limits off": ["--max-concurrency", "0", "--request-timeout", "0"],
    "defaults (64 at once, 10 s)": [],
    "tight (8 at once, 2 s)": ["--max-concurrency", "8", "--request-timeout", "2"],
}


def markdown(record: dict[str, Any]) -> str:
    m = record["machine"]
    cap = record["capacity"]
    lines = [
        f"# Serving under overload: {record['name']}",
        "",
        f"Model `{record['model_path']}`. Capacity (closed loop, {cap['clients']} connections, limits off): "
        f"**{cap['throughput_rps']:.0f} req/s**. Each configuration was then offered "
        f"{record['overload']:g} x that for {record['seconds']:g} s (open loop, {record['connections']} "
        f"connections), with up to "
        f"{record['drain_seconds']:g} s to drain.",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']}, commit {m['git_commit']}; "
        "server and client share it (loopback).",
        "",
        "| configuration | offered | served 200 | shed 503 | timed out 504 | errors | unfinished "
        "| served p50 ms | served p99 ms | 503 p50 ms | /health p50 ms | /health p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ms(block: dict[str, Any], key: str) -> str:
        return f"{block[key]:.0f}" if key in block else "-"

    for name, r in record["overload_runs"].items():
        counts = r["status_counts"]
        errors = sum(n for code, n in counts.items() if code not in ("200", "503", "504"))
        lines.append(
            f"| {name} | {r['offered']:,} | {counts.get('200', 0):,} | {counts.get('503', 0):,} "
            f"| {counts.get('504', 0):,} | {errors:,} | {r['unfinished']:,} "
            f"| {ms(r['served_latency'], 'p50_ms')} | {ms(r['served_latency'], 'p99_ms')} "
            f"| {ms(r['shed_latency'], 'p50_ms')} "
            f"| {ms(r['health'], 'p50_ms')} | {ms(r['health'], 'p99_ms')} |"
        )
    big = record.get("big_bodies")
    if big:
        lines += [
            "",
            f"Big bodies (defaults, {big['clients']} connections, {record['seconds']:g} s): "
            + ", ".join(f"{k}: {n}" for k, n in big["status_counts"].items())
            + f"; /health p50 {ms(big['health'], 'p50_ms')} ms / p99 {ms(big['health'], 'p99_ms')} ms "
            f"({big['health']['failures']} failed).",
        ]
    lines += ["", f"Note: {record['note']}" if record.get("note") else "", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="model folder written by `bert4rec train`")
    p.add_argument("--seconds", type=float, default=10.0, help="how long each configuration is offered load")
    p.add_argument(
        "--drain-seconds", type=float, default=30.0, help="wait at most this long for answers after"
    )
    p.add_argument("--overload", type=float, default=3.0, help="offered rate as a multiple of capacity")
    p.add_argument("--connections", type=int, default=256, help="client connections in the overload runs")
    p.add_argument("--capacity-clients", type=int, default=8)
    p.add_argument("--capacity-seconds", type=float, default=5.0)
    p.add_argument("--big-clients", type=int, default=4, help="0 = skip the big-body run")
    p.add_argument("--queries", type=int, default=200, help="distinct request bodies (cycled)")
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--startup-timeout", type=float, default=180.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="serve_overload", help="results file name (without extension)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--note", default="", help="free text added to the report (machine load, data)")
    p.add_argument("--client-spec", type=Path, help=argparse.SUPPRESS)  # internal: the client process
    p.add_argument("--client-result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.client_spec:
        run_client(args.client_spec, args.client_result)
        return 0
    if args.model is None:
        p.error("--model is required (a folder written by `bert4rec train`)")

    from bert4rec.inference.recommender import Recommender

    rec = Recommender.load(args.model)
    mixed = make_queries(rec, args.queries, 10, args.seed)
    queries = [q for qs in zip(*mixed.values(), strict=False) for q in qs]  # round-robin over query types
    del rec

    print(f"capacity: {args.capacity_clients} connections for {args.capacity_seconds:g} s ...", flush=True)
    capacity = with_server(
        args.model,
        CONFIGS["limits off"],
        {
            "mode": "capacity",
            "queries": queries,
            "clients": args.capacity_clients,
            "seconds": args.capacity_seconds,
        },
        args,
    )
    rate = max(1.0, capacity["throughput_rps"] * args.overload)
    runs = {}
    for name, serve_args in CONFIGS.items():
        print(f"overload: {name}, {rate:.0f} req/s offered for {args.seconds:g} s ...", flush=True)
        spec = {
            "mode": "overload",
            "queries": queries,
            "rate": rate,
            "seconds": args.seconds,
            "drain": args.drain_seconds,
            "connections": args.connections,
        }
        runs[name] = with_server(args.model, serve_args, spec, args)
    big = None
    if args.big_clients:
        print(f"big bodies: {args.big_clients} connections for {args.seconds:g} s ...", flush=True)
        big = with_server(
            args.model,
            [],
            {"mode": "big", "queries": queries[:1], "clients": args.big_clients, "seconds": args.seconds},
            args,
        )
    record = {
        "name": args.name,
        "model_path": str(args.model),
        "capacity": capacity,
        "overload": args.overload,
        "offered_rate_rps": round(rate, 1),
        "seconds": args.seconds,
        "drain_seconds": args.drain_seconds,
        "connections": args.connections,
        "torch_threads": args.torch_threads,  # the server's (as serve_latency records it)
        "serve_args": CONFIGS,
        "overload_runs": runs,
        "big_bodies": big,
        "machine": machine(torch="torch"),
    }
    return publish(args.out, args.name, record, markdown, args.note)


if __name__ == "__main__":
    sys.exit(main())
