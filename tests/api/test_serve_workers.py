"""`bert4rec serve --workers N --index ...`: worker processes build the same app from the environment."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bert4rec.cli import app

runner = CliRunner()
KEYS = ("MODEL", "BACKEND", "INDEX", "INDEX_THRESHOLD", "TORCH_THREADS", "TEXT_COLD_START", "INTENTS_CACHE")
KEYS += ("MAX_BODY_BYTES", "MAX_CONCURRENCY", "REQUEST_TIMEOUT", "ALLOWED_HOSTS", "CORS_ORIGINS", "API_KEY")


@pytest.fixture
def clean_env(monkeypatch):
    """serve --workers writes BERT4REC_* for its workers: restore the environment afterwards."""
    import torch

    for key in KEYS:
        monkeypatch.delenv(f"BERT4REC_{key}", raising=False)
    before = dict(os.environ)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    # monkeypatch only undoes what it set: drop what `serve` added (e.g. BERT4REC_API_KEY, which
    # made every later app in the run ask for the key)
    for key in set(os.environ) - set(before):
        del os.environ[key]


def test_workers_start_from_an_import_string_with_the_settings(
    tiny_artifact, tmp_path, monkeypatch, clean_env
):
    import uvicorn

    from bert4rec.api import workers
    from bert4rec.api.app import create_app
    from bert4rec.artifacts import bundle_version
    from bert4rec.inference.intents import INTENTS_FILE

    model = tmp_path / "model"
    shutil.copytree(tiny_artifact, model)
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("uvicorn's workers share one socket"))
    monkeypatch.setattr(workers, "run_workers", lambda target, **kw: calls.append((target, kw)) or 0)
    key_file = tmp_path / "key"
    key_file.write_text("k" * 20)
    args = ["serve", "--model", str(model), "--workers", "2", "--index", "hnsw", "--port", "9124"]
    args += ["--max-concurrency", "3", "--max-body-bytes", "5000", "--api-key-file", str(key_file)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ((target, kwargs),) = calls
    assert target == "bert4rec.api.app:create_app"
    assert kwargs == {
        "workers": 2,
        "host": "127.0.0.1",
        "port": 9124,
        "options": {"log_level": "info", "server_header": False},
    }
    # encoded once, before the workers start, beside the live bundle version it belongs to
    assert (bundle_version(model) / INTENTS_FILE).is_file()
    assert os.environ["BERT4REC_INDEX"] == "hnsw" and os.environ["BERT4REC_MODEL"] == str(model)
    # what each worker does: build the app from the environment alone
    worker_app = create_app()
    rec = worker_app.state.recommender
    assert (rec.model_index.kind, rec.item_index.kind) == ("hnsw", "hnsw")
    # every worker enforces the limits and the API key the command was given
    settings = worker_app.state.settings
    assert (settings.max_concurrency, settings.max_body_bytes) == (3, 5000)
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "k" * 20
    assert rec.user_intents is not None and rec.user_intents.from_cache


def test_serve_index_option_is_checked(tiny_artifact, monkeypatch, clean_env):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("must not start"))
    result = runner.invoke(app, ["serve", "--model", str(tiny_artifact), "--index", "ivf"])
    assert result.exit_code == 2 and "unknown index 'ivf'" in result.output


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_two_worker_processes_answer_like_the_recommender(tiny_artifact, tmp_path):
    import httpx

    from bert4rec.inference.recommender import Recommender

    model = tmp_path / "model"
    shutil.copytree(tiny_artifact, model)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERT4REC_")}
    cmd = [sys.executable, "-m", "bert4rec.cli", "serve", "--model", str(model), "--port", str(port)]
    server = subprocess.Popen(
        [*cmd, "--workers", "2", "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
        rec = Recommender.load(model)
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) for _ in range(16)]
        try:
            # 16 keep-alive connections, as a load generator holds them
            for client, user in zip(clients, rec.vocab.user_ids, strict=False):
                body = client.post(
                    "/recommend", json={"query_type": "user_to_item", "user_id": user, "top_k": 5}
                )
                assert body.status_code == 200
                assert [i["item_id"] for i in body.json()["items"]] == [
                    r.item_id for r in rec.user_to_item(user, 5).items
                ]
            # each worker listens on its own socket and the kernel spreads the connections: both
            # hold some (uvicorn's shared socket gave all of them to one worker under load)
            children = _workers(server.pid)
            assert len(children) == 2
            held = {pid: _connections(pid, port) for pid in children}
            assert all(held.values()), held
            assert sum(held.values()) == 16
        finally:
            for client in clients:
                client.close()
        # a worker that dies is replaced, and the server keeps answering
        os.kill(children[0], signal.SIGKILL)
        deadline = time.monotonic() + 120
        while len(replaced := _workers(server.pid)) != 2 or children[0] in replaced:
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).status_code == 200
        # SIGTERM stops the parent and every worker
        server.terminate()
        assert server.wait(timeout=30) == 0
        assert not any(os.path.exists(f"/proc/{pid}") for pid in replaced)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)


def _workers(parent: int) -> list[int]:
    """The worker processes (multiprocessing spawn children, not its resource tracker) of `parent`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(int(entry))
    return sorted(found)


def _connections(pid: int, port: int) -> int:
    """Established TCP connections to local `port` whose socket the process `pid` holds (/proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:  # 01: ESTABLISHED
                count += 1
    return count


def test_workers_refuse_training_jobs(tiny_artifact, tmp_path, monkeypatch, clean_env):
    """POST /model swaps the model in the process that answers it: with several workers it cannot."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("must not start"))
    args = ["serve", "--model", str(tiny_artifact), "--workers", "2", "--jobs-dir", str(tmp_path / "jobs")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "cannot serve training jobs" in result.output.replace("\n", " ")


def test_workers_on_a_busy_port_fail_with_one_line(tiny_artifact, tmp_path, monkeypatch, clean_env):
    """The address is tried before the model is loaded: a port in use is one line, exit 2, and
    nothing is written beside the model."""
    from bert4rec.api.workers import reuse_port_supported
    from bert4rec.artifacts import bundle_version
    from bert4rec.inference.intents import INTENTS_FILE

    if not reuse_port_supported():
        pytest.skip("SO_REUSEPORT workers are Linux only")
    model = tmp_path / "model"
    shutil.copytree(tiny_artifact, model)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = ["serve", "--model", str(model), "--workers", "2", "--port", str(port)]
        result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
    assert not (bundle_version(model) / INTENTS_FILE).exists()  # failed before loading the model


def test_settings_hand_everything_to_the_workers_through_the_environment(monkeypatch):
    """Every field reaches a worker, also the ones no option sets (read from the parent's
    environment) and the limits switched off with 0."""
    from pydantic import SecretStr

    from bert4rec.api.settings import ServeSettings

    for name in ServeSettings.model_fields:
        monkeypatch.delenv(f"BERT4REC_{name.upper()}", raising=False)
    parsed = ServeSettings(
        model="/models/m",
        port=9000,
        backend="onnx",
        torch_threads=3,
        text_cold_start=True,
        index="qdrant",
        qdrant_url="http://qdrant:6333",
        qdrant_api_key=SecretStr("q" * 20),
        qdrant_exact=True,
        catalog_sync_s=0.5,
        gc_freeze=False,
        max_concurrency=0,
        request_timeout=0,
        slow_request_timeout=30,
        retry_after_s=4,
        api_key=SecretStr("k" * 20),
        allowed_hosts="a.example, b.example",
        cors_origins=[],
    )
    env = parsed.environment()
    assert env["BERT4REC_MAX_CONCURRENCY"] == "0" and "BERT4REC_JOBS_DIR" not in env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert ServeSettings() == parsed
    assert ServeSettings().max_concurrency is None and ServeSettings().cors_origins == []
