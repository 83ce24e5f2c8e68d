"""`serve --index qdrant` and the app with the Qdrant index (local mode: the same client calls as a
server): the served lists are the exact ones; bad or unreachable settings fail in one line; a
vector database that stops answering gives 503, not 500."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from bert4rec.cli import app

pytest.importorskip("qdrant_client", reason="qdrant-client (scale / dev extra) is needed")
runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    import torch

    for name in ("URL", "PATH", "COLLECTION", "API_KEY"):
        monkeypatch.delenv(f"BERT4REC_QDRANT_{name}", raising=False)
    before = torch.get_num_threads()  # serve sets the process-wide thread count
    yield
    torch.set_num_threads(before)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.output


def test_serve_with_a_local_qdrant_folder(tiny_artifact, tmp_path, uvicorn_calls):
    folder = tmp_path / "qdrant"
    args = ["serve", "--model", str(tiny_artifact), "--index", "qdrant", "--qdrant-path", str(folder)]
    result = runner.invoke(app, [*args, "--qdrant-collection", "tiny"])
    assert result.exit_code == 0, result.output
    ((application, _),) = uvicorn_calls
    rec = application.state.recommender
    assert (rec.model_index.kind, rec.model_index.collection, rec.item_index.collection) == (
        "qdrant",
        "tiny-ip",
        "tiny-cosine",
    )
    assert folder.is_dir()
    assert application.state.settings.index == "qdrant"  # POST /model loads a job's model the same way


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ([], "needs a Qdrant server or a local folder: set qdrant_url"),
        (["--qdrant-url", "qdrant:6333"], "must start with http:// or https://"),
        (["--qdrant-url", "http://x:6333", "--qdrant-path", "q"], "not both"),
        (["--qdrant-path", "q", "--workers", "2"], "need a Qdrant server (--qdrant-url)"),
    ],
)
def test_bad_qdrant_settings_fail_in_one_line(tiny_artifact, uvicorn_calls, extra, fragment):
    result = runner.invoke(app, ["serve", "--model", str(tiny_artifact), "--index", "qdrant", *extra])
    one_line_error(result, fragment)
    assert uvicorn_calls == []


def test_an_unreachable_qdrant_fails_at_start_in_one_line(tiny_artifact, uvicorn_calls):
    url = f"http://127.0.0.1:{closed_port()}"
    result = runner.invoke(
        app, ["serve", "--model", str(tiny_artifact), "--index", "qdrant", "--qdrant-url", url]
    )
    one_line_error(result, f"Qdrant at {url} failed on collection_exists")
    assert uvicorn_calls == []


def test_the_app_serves_the_exact_lists_and_503_when_qdrant_fails(tiny_artifact, tmp_path, api_rec, client):
    from fastapi.testclient import TestClient

    from bert4rec.api import create_app
    from bert4rec.api.settings import ServeSettings

    settings = ServeSettings(model=tiny_artifact, index="qdrant", qdrant_path=tmp_path / "q")
    user, items = api_rec.vocab.user_ids[2], api_rec.vocab.item_ids
    genre = next(iter(api_rec.catalog.filter._columns["genres"].tokens))
    bodies = [
        {"query_type": "user_to_item", "user_id": user, "top_k": 6},
        {"query_type": "contextual", "user_id": user, "item_id": items[5], "top_k": 6},
        {
            "query_type": "sequential",
            "session_items": items[1:6],
            "top_k": 6,
            "filters": {"meta.genres": genre},
        },
        {"query_type": "item_to_item", "item_id": items[7], "top_k": 6},
    ]
    with TestClient(create_app(settings=settings)) as served:
        rec = served.app.state.recommender
        assert rec.model_index.kind == "qdrant"
        for body in bodies:
            got, truth = served.post("/recommend", json=body), client.post("/recommend", json=body)
            assert got.status_code == truth.status_code == 200, got.text
            assert [i["item_id"] for i in got.json()["items"]] == [
                i["item_id"] for i in truth.json()["items"]
            ]
        rec.model_index._conn.client.close()  # the vector database goes away
        answer = served.post("/recommend", json=bodies[0])
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert "failed on query_points" in answer.json()["detail"]
