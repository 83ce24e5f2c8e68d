"""`serve --workers N`: N uvicorn servers in N processes, each listening on its own socket.

uvicorn's own `workers=N` binds one socket in the parent and hands it to every worker, and each
worker accepts from it when its event loop gets there. A keep-alive client that opens its
connections at once finds one worker idle in `accept` and the other still starting its loop: in
`benchmarks/serve_latency.py` all 32 connections landed on one of two workers (seen with `ss`),
which then served the whole load while the other one idled, and throughput swung between 746 and
1,775 requests/s from run to run. Here each worker binds its own socket to the same address with
SO_REUSEPORT, and the kernel spreads new connections over the listening sockets by a hash of the
connection: every worker gets its share however the client connects.

Linux only (SO_REUSEPORT balances connections there; elsewhere `uvicorn.run(workers=N)` is used).
The parent binds the address once first, without listening, so a busy port fails at once with one
line and port 0 resolves to one free port that every worker then shares. It restarts a worker that
dies (up to `MAX_RESTARTS` times a minute), and on SIGINT / SIGTERM stops them all.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
import time
from collections import deque
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

MAX_RESTARTS = 5  # worker deaths tolerated per minute before the server gives up
STOP_GRACE_S = 10.0


def reuse_port_supported() -> bool:
    """Whether the kernel balances connections over SO_REUSEPORT sockets (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind_reuse_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT, not yet listening. Raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _worker(app: str, host: str, port: int, options: dict[str, Any]) -> None:
    """One worker process: its own listening socket on the shared address, one uvicorn server."""
    import uvicorn

    sock = bind_reuse_port(host, port)
    sock.listen(2048)
    config = uvicorn.Config(app, factory=True, host=host, port=port, **options)
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(
    app: str,
    *,
    workers: int,
    host: str,
    port: int,
    options: dict[str, Any] | None = None,
) -> int:
    """Serve the app factory `app` ("module:function") from `workers` processes on host:port.

    `options` go to uvicorn.Config (log_level, server_header, ...). Returns the exit code: 0 after
    SIGINT / SIGTERM, 1 when workers kept dying. Raises OSError when the address cannot be bound.
    """
    options = dict(options or {})
    # reserve the address (and resolve port 0) before starting anything; never listens itself
    guard = bind_reuse_port(host, port)
    port = guard.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(app, host, port, options), name="bert4rec-worker")
        process.start()
        return process

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes = [start() for _ in range(workers)]
    deaths: deque[float] = deque()
    code = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for i, process in enumerate(processes):
                if process.is_alive() or stopping:
                    continue
                now = time.monotonic()
                deaths.append(now)
                while deaths and now - deaths[0] > 60:
                    deaths.popleft()
                if len(deaths) > MAX_RESTARTS:
                    print(
                        f"bert4rec serve: workers died {len(deaths)} times in a minute "
                        f"(last exit code {process.exitcode}); stopping",
                        file=sys.stderr,
                    )
                    stopping, code = True, 1
                    break
                processes[i] = start()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + STOP_GRACE_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        guard.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
