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


def test_export_follows_the_catalogue_added_in_retired_out(fused_artifact, minilm, tmp_path):
    """Items added after training are exported with the vectors the server ranks them by; retired
    items are left out (a vector database loaded from the file must not serve them)."""
    import shutil

    from bert4rec.inference.catalog import NewItem
    from bert4rec.inference.recommender import Recommender

    folder = tmp_path / "model"
    shutil.copytree(fused_artifact, folder)
    rec = Recommender.load(folder)
    rec.enable_content(minilm)
    n = rec.catalog.n_trained
    meta = {"title": "Item 900 (Genre99)", "genres": "Genre99"}
    rec.add_items([NewItem("900", "a brand new release", meta)])
    retired = rec.vocab.item_ids[4]
    rec.retire_items([retired])
    out = tmp_path / "items.parquet"
    result = runner.invoke(app, ["export-vectors", str(folder), str(out)])
    assert result.exit_code == 0, result.output
    assert "1 retired item(s) left out" in result.output
    exported = pl.read_parquet(out)
    assert exported.height == n  # n trained + 1 added - 1 retired
    assert retired not in exported["item_id"].to_list()
    new = exported.filter(pl.col("item_id") == 900)
    assert new["added"].to_list() == [True] and new["popularity"].to_list() == [0]
    assert new["genres"].to_list() == ["Genre99"]
    served = rec.state.intents.item_vectors()[rec.vocab.item_idx(900)]
    np.testing.assert_allclose(new["vector"].to_numpy()[0], served, rtol=1e-6)
    # a session's list through the exported file is the server's, new item included
    session = rec.vocab.item_ids[10:14]
    listed = rec.sequential(session, k=10, filters={"genres": "Genre99"})
    q = rec.state.intents.encode(np.array([-1]), [np.array([rec.vocab.item_idx(i) for i in session])])[0]
    assert [r.item_id for r in listed.items] == local_top_k(exported, q.tolist(), 10, session, "Genre99")
    assert [r.item_id for r in listed.items] == [900]
