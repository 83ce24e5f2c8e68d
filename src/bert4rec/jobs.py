"""Training jobs: a training payload run as `bert4rec train --payload` in its own OS process, with
its state in SQLite so that it survives a restart of the process that started it (the API server).

Layout under the jobs folder:

    jobs.sqlite3            one row per job: status, payload, pid, times, error, final metrics, bundle
    <job id>/payload.json   the validated payload (data paths made absolute)
    <job id>/train.log      the training process's output
    <job id>/progress.json  epoch, step, elapsed seconds, latest validation NDCG@10 (while training)
    <job id>/run/           the run folder: checkpoints, logs, results/, <model_type>/model (the bundle)

Status: queued -> running -> succeeded | failed | cancelled (a queued job can be cancelled too).
At most `max_running` jobs run at once; the next queued job starts when one ends, and submitting
more than `max_queued` jobs beyond those answers `JobLimitError`. A monitor thread (every `poll_s`
seconds) notices ended processes and starts queued jobs. Training processes run in their own session:
they keep going when the server stops, and a restarted server picks them up by pid; a job whose
process ended without results while no server watched it is marked failed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bert4rec.config import DataConfig
from bert4rec.data.datasets import table_columns
from bert4rec.errors import Bert4RecError, DataError
from bert4rec.io import atomic_write_text
from bert4rec.payload import PayloadError, TrainingPayload, parse_payload

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED = ("succeeded", "failed", "cancelled")
# a job claimed by one server process but not yet given a pid (it is being spawned) is not "dead"
_SPAWN_GRACE_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    model_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    pid INTEGER,
    error TEXT,
    result TEXT,
    bundle TEXT
)
"""


class JobError(Bert4RecError):
    """Base class of the job store's errors."""


class JobNotFoundError(JobError, KeyError):
    """No job has this id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class JobLimitError(JobError):
    """Too many jobs are running or queued; submit again later."""


class JobStateError(JobError):
    """The job is not in a state that allows the operation (cancel a finished job, serve a failed one)."""


@dataclass(frozen=True)
class Job:
    """One training job as stored, with its latest progress (read from its progress file)."""

    id: str
    status: JobStatus
    model_type: str
    payload: dict[str, Any]
    created_at: float
    started_at: float | None
    finished_at: float | None
    pid: int | None
    error: str | None
    result: dict[str, Any] | None  # metrics (test split), best_val_ndcg@10, epochs, train_seconds
    bundle: str | None  # the trained model folder, once succeeded
    progress: dict[str, Any] | None

    @property
    def elapsed_s(self) -> float | None:
        """Seconds since the job started (until it finished)."""
        if self.started_at is None:
            return None
        return round((self.finished_at or time.time()) - self.started_at, 2)


class JobStore:
    """Submit, list, inspect and cancel training jobs kept under `root` (see the module docstring).

    `env` adds environment variables for the training processes (e.g. `OMP_NUM_THREADS`);
    `monitor=False` leaves refreshing to explicit `refresh()` calls (tests).
    """

    def __init__(
        self,
        root: Path | str,
        *,
        max_running: int = 1,
        max_queued: int = 16,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        poll_s: float = 1.0,
        monitor: bool = True,
    ) -> None:
        if max_running < 1 or max_queued < 0:
            raise ValueError(f"max_running must be >= 1 and max_queued >= 0, got {max_running}, {max_queued}")
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_running, self.max_queued = max_running, max_queued
        self.env, self.python, self.poll_s = dict(env or {}), python, poll_s
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # the processes this store started
        self._lock = threading.RLock()
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
        self.refresh()  # jobs that ended while no server watched them; queued jobs start
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        if monitor:
            self._monitor = threading.Thread(target=self._watch, name="bert4rec-jobs", daemon=True)
            self._monitor.start()

    # ------------------------------------------------------------------------------------ public

    def submit(self, raw: Any) -> Job:
        """Validate a payload (a decoded JSON/YAML mapping) and queue it; it starts at once when fewer
        than `max_running` jobs run. Raises PayloadError naming the bad field, or JobLimitError."""
        payload = self._validated(raw)
        job_id = uuid.uuid4().hex[:12]
        folder = self.root / job_id
        folder.mkdir()
        atomic_write_text(
            folder / "payload.json", payload.model_dump_json(indent=2, exclude_unset=True) + "\n"
        )
        try:
            self._insert(job_id, payload)
        except JobLimitError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.refresh()
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        """The job with this id. Raises JobNotFoundError."""
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"no job with id {job_id!r}")
        return self._job(row)

    def list_jobs(self, status: JobStatus | None = None) -> list[Job]:
        """All jobs (or those with `status`), newest first."""
        where, args = ("", []) if status is None else (" WHERE status = ?", [status])
        with self._db() as db:
            rows = db.execute(f"SELECT * FROM jobs{where} ORDER BY created_at DESC", args).fetchall()
        return [self._job(row) for row in rows]

    def cancel(self, job_id: str, wait_s: float = 5.0) -> Job:
        """Cancel a queued or running job; a running job's process group gets SIGTERM, then SIGKILL
        after `wait_s` seconds. Cancelling a cancelled job is a no-op; a finished one raises
        JobStateError."""
        with self._lock:
            job = self.get(job_id)
            if job.status == "cancelled":
                return job
            if job.status in FINISHED:
                raise JobStateError(
                    f"job {job_id} has already {job.status}; only queued or running jobs can be cancelled"
                )
            with self._db() as db, _transaction(db):
                db.execute(
                    "UPDATE jobs SET status = 'cancelled', finished_at = ?, error = 'cancelled on request' "
                    "WHERE id = ? AND status IN ('queued', 'running')",
                    (time.time(), job_id),
                )
            if job.status == "running" and job.pid is not None:
                self._terminate(job_id, job.pid, wait_s)
        self.refresh()
        return self.get(job_id)

    def bundle(self, job_id: str) -> Path:
        """The model folder a succeeded job trained. Raises JobNotFoundError or JobStateError."""
        job = self.get(job_id)
        if job.status != "succeeded" or job.bundle is None:
            raise JobStateError(f"job {job_id} is {job.status}: only a succeeded job has a model to serve")
        path = Path(job.bundle)
        if not path.is_dir():
            raise JobStateError(f"job {job_id}'s model folder {path} no longer exists")
        return path

    def refresh(self) -> None:
        """Mark jobs whose process ended (succeeded / failed) and start queued jobs while fewer than
        `max_running` run. Called by the monitor thread and after every change."""
        with self._lock:
            for job in self.list_jobs("running"):
                if not self._alive(job):
                    self._finish(job)
            self._start_queued()

    def close(self) -> None:
        """Stop the monitor thread. Running training processes go on (a new store picks them up)."""
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)

    # ------------------------------------------------------------------------------------ internals

    def _validated(self, raw: Any) -> TrainingPayload:
        payload = parse_payload(raw)
        for field in ("data_path", "items_path"):
            value: Path | None = getattr(payload, field)
            if value is None:
                continue
            path = value.expanduser().resolve()
            if not path.is_file():
                raise PayloadError([(field, f"file not found on the training machine: {path}")])
            payload = payload.model_copy(update={field: path})
        cfg = payload.to_config()  # raises PayloadError for an invalid combination
        _check_columns(payload, cfg.data)
        return payload

    def _insert(self, job_id: str, payload: TrainingPayload) -> None:
        with self._lock, self._db() as db, _transaction(db):
            active = _count(db, "status IN ('queued', 'running')")
            if active >= self.max_running + self.max_queued:
                raise JobLimitError(
                    f"{active} jobs are running or queued (limit: {self.max_running} running + "
                    f"{self.max_queued} queued); wait for one to finish or cancel one"
                )
            db.execute(
                "INSERT INTO jobs (id, status, model_type, payload, created_at) "
                "VALUES (?, 'queued', ?, ?, ?)",
                (job_id, payload.model_type, payload.model_dump_json(exclude_unset=True), time.time()),
            )

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        # one short-lived connection per use: the monitor thread and request threads never share one
        with closing(sqlite3.connect(self.root / "jobs.sqlite3", timeout=30, isolation_level=None)) as db:
            db.row_factory = sqlite3.Row
            yield db

    def _job(self, row: sqlite3.Row) -> Job:
        folder = self.root / row["id"]
        return Job(
            id=row["id"],
            status=row["status"],
            model_type=row["model_type"],
            payload=json.loads(row["payload"]),
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            pid=row["pid"],
            error=row["error"],
            result=json.loads(row["result"]) if row["result"] else None,
            bundle=row["bundle"],
            progress=_read_json(folder / "progress.json"),
        )

    def _command(self, job_id: str) -> list[str]:
        folder = self.root / job_id
        return [
            self.python, "-m", "bert4rec.cli", "train",
            "--payload", str(folder / "payload.json"),
            "--out", str(folder / "run"),
            "--progress-file", str(folder / "progress.json"),
            "--no-progress", "--examples", "0",
        ]  # fmt: skip

    def _start_queued(self) -> None:
        with self._db() as db:
            running = _count(db, "status = 'running'")
            queued = db.execute(
                "SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at LIMIT ?",
                (max(self.max_running - running, 0),),
            ).fetchall()
        for (job_id,) in queued:
            with self._db() as db, _transaction(db):
                # claim it (another server process over the same folder may try too)
                claimed = db.execute(
                    "UPDATE jobs SET status = 'running', started_at = ? WHERE id = ? AND status = 'queued' "
                    "AND (SELECT COUNT(*) FROM jobs WHERE status = 'running') < ?",
                    (time.time(), job_id, self.max_running),
                ).rowcount
            if claimed:
                self._spawn(job_id)

    def _spawn(self, job_id: str) -> None:
        folder = self.root / job_id
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        try:
            with open(folder / "train.log", "ab") as log:
                # own session: the job outlives the server and is cancelled as a process group
                proc = subprocess.Popen(
                    self._command(job_id),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=folder,
                    env=env,
                    start_new_session=True,
                )
        except OSError as err:
            self._set_finished(job_id, "failed", error=f"could not start the training process: {err}")
            return
        self._procs[job_id] = proc
        with self._db() as db:
            db.execute("UPDATE jobs SET pid = ? WHERE id = ?", (proc.pid, job_id))

    def _alive(self, job: Job) -> bool:
        proc = self._procs.get(job.id)
        if proc is not None:
            return proc.poll() is None
        if job.pid is None:  # claimed, being spawned (by another server process)
            return job.started_at is not None and time.time() - job.started_at < _SPAWN_GRACE_S
        return _pid_runs_job(job.pid, job.id)

    def _finish(self, job: Job) -> None:
        """The job's process has ended: succeeded if it wrote its results and model, else failed."""
        proc = self._procs.pop(job.id, None)
        returncode = proc.returncode if proc is not None else None
        run = self.root / job.id / "run"
        record = _read_json(run / "results" / f"results_{job.model_type}.json")
        bundle = run / job.model_type / "model"
        if returncode in (0, None) and record is not None and _has_bundle(bundle):
            result = {
                "metrics": record.get("metrics"),
                "best_val_ndcg@10": record.get("best_val_ndcg@10"),
                "epochs": record.get("epochs"),
                "train_seconds": record.get("train_seconds"),
            }
            self._set_finished(job.id, "succeeded", result=result, bundle=str(bundle))
            return
        why = f"exit code {returncode}" if returncode is not None else "it ended while no server watched it"
        tail = _error_lines(self.root / job.id / "train.log")
        self._set_finished(
            job.id,
            "failed",
            error=f"the training process ended without a model ({why})" + (f": {tail}" if tail else ""),
        )

    def _set_finished(
        self,
        job_id: str,
        status: JobStatus,
        *,
        error: str | None = None,
        result: Any = None,
        bundle: str | None = None,
    ) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, error = ?, result = ?, bundle = ? "
                "WHERE id = ? AND status IN ('queued', 'running')",
                (
                    status,
                    time.time(),
                    error,
                    json.dumps(result) if result is not None else None,
                    bundle,
                    job_id,
                ),
            )

    def _terminate(self, job_id: str, pid: int, wait_s: float) -> None:
        proc = self._procs.pop(job_id, None)
        if proc is None and not _pid_runs_job(pid, job_id):
            return  # already gone (or the pid is someone else's now)
        for sig, wait in ((signal.SIGTERM, wait_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if proc is not None:
                    if proc.poll() is not None:
                        return
                elif not _pid_runs_job(pid, job_id):
                    return
                time.sleep(0.05)
        if proc is not None:
            proc.wait(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - keep watching; the next round retries
                time.sleep(self.poll_s)


def _check_columns(payload: TrainingPayload, data: DataConfig) -> None:
    """Raise PayloadError naming the payload field whose column a data file lacks (read from the
    files' headers only), as the loader would find out minutes later inside the job."""
    files = {"data_path": payload.data_path, "items_path": payload.items_path}
    wanted: dict[str, list[tuple[str, str]]] = {
        "data_path": [
            ("user_column", payload.user_column),
            ("item_column", payload.item_column),
            ("timestamp_column", payload.timestamp_column),
        ]
    }
    meta = [("display_name", payload.display_name)] if payload.display_name else []
    meta += [("metadata_columns", column) for column in payload.metadata_columns]
    if payload.items_path is None:
        wanted["data_path"] += meta
    else:
        wanted["items_path"] = [("item_column", payload.item_column), *meta]
    for file_field, columns in wanted.items():
        path = files[file_field]
        assert path is not None
        try:
            present = table_columns(
                path, data.separator, data.column_names if file_field == "data_path" else None
            )
        except DataError as err:
            raise PayloadError([(file_field, str(err))]) from None
        missing = [(field, column) for field, column in columns if column not in present]
        if missing:
            raise PayloadError(
                [
                    (field, f"column {column!r} is not in {path.name} (columns: {present})")
                    for field, column in missing
                ]
            )


def _count(db: sqlite3.Connection, where: str) -> int:
    count: int = db.execute(f"SELECT COUNT(*) FROM jobs WHERE {where}").fetchone()[0]
    return count


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file the training process wrote, or None when missing or unreadable."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _pid_runs_job(pid: int, job_id: str) -> bool:
    """Whether process `pid` is alive and is this job's (a pid can be reused after a restart).
    On Linux its command line must name the job's folder; a zombie has an empty one."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            return job_id in cmdline.read_bytes().decode(errors="replace")
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _has_bundle(folder: Path) -> bool:
    """Whether a save finished in `folder` (its CURRENT pointer names a complete version)."""
    from bert4rec.artifacts import bundle_version  # torch: only once a job has ended

    try:
        return (bundle_version(folder) / "manifest.json").is_file()
    except Bert4RecError:
        return False


def _error_lines(log: Path, max_chars: int = 1000) -> str:
    """The CLI's `error: ...` message from a training log (else its last lines), on one line."""
    try:
        lines = [line.rstrip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.lstrip().startswith("error:")]
    chosen = lines[starts[-1] :] if starts else lines[-5:]
    text = " ".join(line.strip() for line in chosen)
    return text if len(text) <= max_chars else "..." + text[-max_chars:]
