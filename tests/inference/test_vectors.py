"""Exported item vectors: plain numpy retrieval with a returned intent vector gives the server's list."""

from __future__ import annotations

import importlib.util

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from bert4rec.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tiny_artifact, tmp_path_factory):
    out = tmp_path_factory.mktemp("vectors") / "items.parquet"
    result = runner.invoke(app, ["export-vectors", str(tiny_artifact), str(out)])
    assert result.exit_code == 0, result.output
    assert "item vectors" in result.output
    return pl.read_parquet(out)


def test_export_has_every_item_with_id_vector_and_metadata(exported, tiny_artifact):
    from bert4rec.artifacts import load_bundle

    bundle = load_bundle(tiny_artifact)
    assert exported["item_id"].to_list() == bundle.vocab.item_ids
    assert exported.schema["vector"] == pl.Array(pl.Float32, bundle.model.cfg.hidden_size + 1)
    assert {"title", "genres", "popularity"} <= set(exported.columns)
    meta = dict(zip(bundle.items["item_id"].to_list(), bundle.items["title"].to_list(), strict=True))
    assert exported["title"].to_list() == [meta.get(i) for i in bundle.vocab.item_ids]


def local_top_k(exported: pl.DataFrame, q: list[float], k: int, seen: list, genre: str | None) -> list:
    """What a client does with a vector store: inner product, drop seen items and non-matching ones."""
    frame = exported
    if genre is not None:
        tokens = pl.col("genres").str.to_lowercase().str.split("|")
        frame = frame.filter(tokens.list.contains(genre.lower()))
    frame = frame.filter(~pl.col("item_id").is_in(seen))
    scores = frame["vector"].to_numpy() @ np.asarray(q, dtype=np.float32)
    order = np.argsort(-scores, kind="stable")[:k]
    return [frame["item_id"][int(i)] for i in order]


@pytest.mark.skipif(importlib.util.find_spec("fastapi") is None, reason="the API needs the serve extra")
def test_retrieval_with_exported_vectors_gives_the_servers_top_k(exported, tiny_artifact):
    from fastapi.testclient import TestClient

    from bert4rec.api import create_app
    from bert4rec.inference.recommender import Recommender

    rec = Recommender.load(tiny_artifact)
    genre = "Comedy" if "comedy" in rec.catalog.filter._columns["genres"].tokens else None
    client = TestClient(create_app(rec))
    users, items = rec.vocab.user_ids, rec.vocab.item_ids
    queries = [
        ({"query_type": "user_to_item", "user_id": users[1]}, rec.history(users[1])),
        ({"query_type": "user_to_item", "user_id": users[7], "exclude_seen": False}, []),
        (
            {"query_type": "contextual", "user_id": users[4], "item_id": items[9]},
            [*rec.history(users[4]), items[9]],
        ),
        ({"query_type": "sequential", "item_ids": items[20:26]}, items[20:26]),
    ]
    checked = 0
    for body, seen in queries:
        for filters in ({}, {"meta.genres": genre} if genre else {}):
            r = client.post(
                "/recommend", json={**body, "top_k": 7, "filters": filters, "return_vector": True}
            )
            assert r.status_code == 200, r.text
            served = r.json()
            q = served["intent_vector"]
            assert q is not None and len(q) == rec.intents.dim and q[-1] == 1.0
            want = local_top_k(exported, q, 7, seen, genre if filters else None)
            assert [i["item_id"] for i in served["items"]] == want
            checked += 1
    assert checked == 8
    # without return_vector, and on paths that search no intent, the field is null
    plain = client.post("/recommend", json={"query_type": "user_to_item", "user_id": users[1]}).json()
    assert plain["intent_vector"] is None
    for body in (
        {"query_type": "item_to_item", "item_id": items[3]},
        {"query_type": "user_to_item", "user_id": "new-user"},
    ):
        assert client.post("/recommend", json={**body, "return_vector": True}).json()["intent_vector"] is None
    bad = client.post(
        "/recommend", json={"query_type": "sequential", "item_ids": [items[0]], "return_vector": 1}
    )
    assert bad.status_code == 422


def test_export_vectors_bad_paths_fail_with_one_line(tiny_artifact, tmp_path):
    r = runner.invoke(app, ["export-vectors", str(tmp_path / "nope"), str(tmp_path / "v.parquet")])
    assert r.exit_code == 2 and "not a folder" in r.output
    r = runner.invoke(app, ["export-vectors", str(tiny_artifact), str(tmp_path / "missing" / "v.parquet")])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = runner.invoke(app, ["export-vectors", str(tiny_artifact), str(tmp_path)])
    assert r.exit_code == 2 and "is a folder" in r.output
    assert list(tmp_path.iterdir()) == []  # nothing half-written
