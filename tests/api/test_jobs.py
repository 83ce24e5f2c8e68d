"""Training jobs over HTTP: submit, progress, metrics, serve the result, cancel, restart, limits."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bert4rec.api import create_app
from bert4rec.artifacts import bundle_version
from bert4rec.jobs import JobStore, _pid_runs_job

ENV = {"OMP_NUM_THREADS": "1"}  # the training processes share the test machine


@pytest.fixture(scope="module")
def events_csv(tmp_path_factory, tiny_prepared) -> Path:
    """The tiny generated interactions with the column names of a user's own log."""
    path = tmp_path_factory.mktemp("data") / "events.csv"
    frame = tiny_prepared.interactions.frame.rename({"user_id": "user", "item_id": "item", "timestamp": "ts"})
    frame.write_csv(path)
    return path


def tiny_payload(events_csv: Path, **fields: object) -> dict[str, object]:
    return {
        "data_path": str(events_csv),
        "user_column": "user",
        "item_column": "item",
        "timestamp_column": "ts",
        "max_sequence_length": 12,
        "hidden_size": 16,
        "attention_heads": 2,
        "model_depth": 1,
        "training_epochs": 2,
        "batch_size": 64,
        "learning_rate": 0.01,
        **fields,
    }


def wait_for(client: TestClient, job_id: str, statuses: set[str], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory, api_rec, events_csv):
    """One tiny job run to the end over HTTP: (jobs folder, the job as GET /jobs/{id} shows it)."""
    root = tmp_path_factory.mktemp("jobs")
    store = JobStore(root, env=ENV, poll_s=0.2)
    with TestClient(create_app(api_rec, jobs=store)) as client:
        response = client.post("/jobs", json=tiny_payload(events_csv))
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["status"] in ("queued", "running")
        assert response.headers["location"] == f"/jobs/{job['id']}"
        done = wait_for(client, job["id"], {"succeeded", "failed", "cancelled"})
    store.close()
    assert done["status"] == "succeeded", done["error"]
    return root, done


def test_job_reports_progress_metrics_and_bundle(finished_job):
    _, job = finished_job
    progress = job["progress"]
    assert progress["stage"] == "trained" and progress["epoch"] == 2 and progress["max_epochs"] == 2
    assert progress["step"] > 0 and progress["elapsed_s"] >= 0
    assert 0.0 <= progress["val_ndcg@10"] <= 1.0
    assert 0.0 <= job["metrics"]["metrics"]["full"]["ndcg@10"] <= 1.0
    assert job["metrics"]["epochs"] == 2
    assert (bundle_version(Path(job["bundle"])) / "model.safetensors").is_file()
    assert job["elapsed_s"] > 0 and job["finished_at"] >= job["started_at"] >= job["created_at"]
    assert job["payload"]["max_sequence_length"] == 12


def test_finished_job_is_served_by_swapping_the_model(finished_job, api_rec):
    root, job = finished_job
    store = JobStore(root, monitor=False)
    with TestClient(create_app(api_rec, jobs=store)) as client:
        before = client.get("/health").json()["fingerprint"]
        swapped = client.post("/model", json={"job_id": job["id"]})
        assert swapped.status_code == 200, swapped.text
        assert swapped.json()["bundle"] == job["bundle"] and swapped.json()["model_type"] == "bert4rec"
        after = client.get("/health").json()["fingerprint"]
        assert after != before  # now the job's model answers
        # loaded as a server loads a model: every stored user's intent computed up front
        assert client.app.state.recommender.user_intents is not None
        recs = client.post("/recommend", json={"query_type": "user_to_item", "user_id": "1", "top_k": 5})
        assert recs.status_code == 200, recs.text
        assert len(recs.json()["items"]) == 5 and recs.json()["path"] == "model"
        # requests in flight while the model is swapped again all succeed
        statuses: list[int] = []

        def ask() -> None:
            for _ in range(15):
                query = {"query_type": "sequential", "item_ids": ["1", "2", "3"], "top_k": 3}
                statuses.append(client.post("/recommend", json=query).status_code)

        threads = [threading.Thread(target=ask) for _ in range(3)]
        for thread in threads:
            thread.start()
        for _ in range(3):
            assert client.post("/model", json={"job_id": job["id"]}).status_code == 200
        for thread in threads:
            thread.join()
        assert statuses == [200] * 45
        missing = client.post("/model", json={"job_id": "no-such-job"})
        assert missing.status_code == 404 and "no-such-job" in missing.json()["detail"]


def test_state_survives_a_restart(finished_job, api_rec):
    """A new app over the same jobs folder lists the finished job with its results."""
    root, job = finished_job
    with TestClient(create_app(api_rec, jobs=JobStore(root, monitor=False))) as client:
        listed = client.get("/jobs").json()["jobs"]
        assert [j["id"] for j in listed] == [job["id"]]
        again = client.get(f"/jobs/{job['id']}").json()
        assert again["status"] == "succeeded" and again["metrics"] == job["metrics"]
        assert again["bundle"] == job["bundle"]
        # a finished job cannot be cancelled
        assert client.delete(f"/jobs/{job['id']}").status_code == 409


def test_bad_payload_answers_422_naming_the_field(tmp_path, api_rec, events_csv):
    store = JobStore(tmp_path, monitor=False)
    with TestClient(create_app(api_rec, jobs=store)) as client:
        cases = [
            ({"max_seq_length": 20}, "max_seq_length", "did you mean 'max_sequence_length'"),
            ({"hidden_size": 30, "attention_heads": 4}, "attention_heads", "divisible"),
            ({"data_path": str(tmp_path / "nope.csv")}, "data_path", "file not found"),
            ({"masking_ratio": 2}, "masking_ratio", "less than 1"),
            ({"use_attention_mask": False}, "use_attention_mask", "never attended"),
            ({"user_column": "uid"}, "user_column", "column 'uid' is not in events.csv"),
            ({"metadata_columns": ["brand"]}, "metadata_columns", "column 'brand' is not in events.csv"),
        ]
        for fields, field, message in cases:
            response = client.post("/jobs", json=tiny_payload(events_csv, **fields))
            assert response.status_code == 422, response.text
            detail = response.json()["detail"]
            assert detail[0]["loc"] == ["body", field] and message in detail[0]["msg"], detail
        missing = client.post("/jobs", json={"user_column": "user"}).json()["detail"]
        assert {tuple(d["loc"]) for d in missing} >= {("body", "item_column"), ("body", "timestamp_column")}
        assert client.post("/jobs", json=["not", "an", "object"]).status_code == 422
        assert client.get("/jobs").json() == {"jobs": []}  # nothing was queued
        assert client.get("/jobs/unknown").status_code == 404
        assert client.delete("/jobs/unknown").status_code == 404


def test_job_that_fails_reports_the_error(tmp_path, api_rec):
    """A payload that passes validation but whose data cannot be trained on ends failed, with the
    training process's own error message."""
    few = tmp_path / "few.csv"
    few.write_text("user,item,ts\n" + "".join(f"{u},{u},{u}\n" for u in range(1, 30)))  # 1 item per user
    store = JobStore(tmp_path / "jobs", env=ENV, poll_s=0.2)
    with TestClient(create_app(api_rec, jobs=store)) as client:
        job = client.post("/jobs", json=tiny_payload(few)).json()
        done = wait_for(client, job["id"], {"succeeded", "failed", "cancelled"})
    store.close()
    assert done["status"] == "failed" and done["bundle"] is None and done["metrics"] is None
    assert "exit code 2" in done["error"] and "error:" in done["error"], done["error"]


def test_concurrency_bound_queues_then_refuses(tmp_path, api_rec, events_csv):
    """One job runs, one waits in the queue, a third answers 429; cancelling frees the slot."""
    store = JobStore(tmp_path, max_running=1, max_queued=1, env=ENV, monitor=False)
    long_job = tiny_payload(events_csv, training_epochs=1000)
    with TestClient(create_app(api_rec, jobs=store)) as client:
        first = client.post("/jobs", json=long_job).json()
        second = client.post("/jobs", json=long_job).json()
        assert (first["status"], second["status"]) == ("running", "queued")
        third = client.post("/jobs", json=long_job)
        assert third.status_code == 429 and "limit: 1 running + 1 queued" in third.json()["detail"]
        assert [j["id"] for j in client.get("/jobs", params={"status": "queued"}).json()["jobs"]] == [
            second["id"]
        ]

        pid = store.get(first["id"]).pid
        assert pid is not None and _pid_runs_job(pid, first["id"])
        cancelled = client.delete(f"/jobs/{first['id']}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        with pytest.raises(ProcessLookupError):  # the process is gone (and reaped)
            os.kill(pid, 0)
        assert client.get(f"/jobs/{second['id']}").json()["status"] == "running"  # took the free slot
        assert client.delete(f"/jobs/{second['id']}").json()["status"] == "cancelled"
        assert client.delete(f"/jobs/{second['id']}").json()["status"] == "cancelled"  # idempotent
        serve = client.post("/model", json={"job_id": second["id"]})
        assert serve.status_code == 409 and "cancelled" in serve.json()["detail"]


def test_running_job_survives_a_restart_and_a_dead_one_is_marked_failed(tmp_path, events_csv):
    long_job = tiny_payload(events_csv, training_epochs=1000)
    old = JobStore(tmp_path, max_running=2, env=ENV, monitor=False)
    survivor, victim = old.submit(long_job), old.submit(long_job)
    assert survivor.status == victim.status == "running"
    old.close()  # the server stops; its training processes keep running
    # the victim's process dies while no server watches it
    assert victim.pid is not None and survivor.pid is not None
    os.killpg(victim.pid, signal.SIGKILL)
    os.waitpid(victim.pid, 0)

    new = JobStore(tmp_path, max_running=2, monitor=False)
    dead = new.get(victim.id)
    assert dead.status == "failed" and "ended while no server watched it" in (dead.error or "")
    assert new.get(survivor.id).status == "running"
    # the new server can cancel the process the old one started
    assert new.cancel(survivor.id).status == "cancelled"
    assert not _pid_runs_job(survivor.pid, survivor.id)
    os.waitpid(survivor.pid, 0)  # reap it: this test process is still its parent


def test_job_routes_are_absent_without_a_jobs_folder(client):
    assert client.get("/jobs").status_code == 404
    assert client.post("/model", json={"job_id": "x"}).status_code == 404


def test_jobs_folder_and_bound_from_the_environment(tmp_path, api_rec, monkeypatch):
    monkeypatch.setenv("BERT4REC_JOBS_DIR", str(tmp_path))
    monkeypatch.setenv("BERT4REC_MAX_JOBS", "2")
    monkeypatch.setenv("BERT4REC_MAX_QUEUED_JOBS", "0")
    app = create_app(api_rec)
    store: JobStore = app.state.jobs
    try:
        assert (store.root, store.max_running, store.max_queued) == (tmp_path.resolve(), 2, 0)
        with TestClient(app) as client:
            assert client.get("/jobs").json() == {"jobs": []}
    finally:
        store.close()
