"""The Qdrant index in qdrant-client's local mode (the same client calls as against a server): exact
search's lists and scores, exclusions and masks by every route, stale collections, bad settings."""

from __future__ import annotations

import shutil
import socket

import numpy as np
import pytest

from bert4rec.errors import ConfigError, IndexUnavailableError
from bert4rec.inference.index import ExactIndex, SearchResult, build_index

qdrant_client = pytest.importorskip("qdrant_client", reason="qdrant-client (scale / dev extra) is needed")
from bert4rec.inference.qdrant_index import (  # noqa: E402
    FINGERPRINT_KEY,
    QDRANT_HINT,
    QdrantIndex,
    QdrantOptions,
    row_hashes,
)


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    """(n + 1, d) vectors around 20 centres with different lengths (row 0 = PAD, zero)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, d))
    v = (centres[rng.integers(0, 20, n)] + 0.5 * rng.normal(size=(n, d))) * rng.uniform(0.5, 1.5, (n, 1))
    return np.vstack([np.zeros((1, d)), v]).astype(np.float32)


@pytest.fixture
def client():
    c = qdrant_client.QdrantClient(":memory:")
    yield c
    c.close()


def assert_same(got: SearchResult, truth: SearchResult, exact: ExactIndex, q: np.ndarray) -> None:
    """Same items in the same order and the same scores, to float tolerance: two items may swap only
    when their exact scores tie to within 1e-5 (float32 sums in another order)."""
    assert len(got.indices) == len(truth.indices)
    np.testing.assert_allclose(got.scores, truth.scores, rtol=1e-5, atol=1e-5)
    all_scores = exact.scores(q).numpy()
    for g, t in zip(got.indices.tolist(), truth.indices.tolist(), strict=True):
        if g != t:
            assert abs(all_scores[g] - all_scores[t]) < 1e-5, (got.indices, truth.indices)


@pytest.mark.parametrize("metric", ["cosine", "ip"])
@pytest.mark.parametrize("max_filter_ids", [10_000, 60, 0])
def test_qdrant_search_is_exact_search_with_exclusions_and_masks(client, metric, max_filter_ids):
    """max_filter_ids 10,000: every filter is sent as must_not has_id; 60: a selective mask is sent
    as must has_id, a broad one filtered here; 0: everything filtered here, page by page."""
    v = clustered(400, 8)
    exact = ExactIndex(v, metric)
    index = QdrantIndex(v, metric, {"max_filter_ids": max_filter_ids}, client=client)
    assert (index.kind, index.metric, index.dim, index.n_items) == ("qdrant", metric, 8, 400)
    np.testing.assert_allclose(index.vector(7), exact.vector(7), rtol=1e-6)
    rng = np.random.default_rng(1)
    for trial in range(24):
        q = rng.normal(size=8).astype(np.float32)
        exclude = rng.integers(1, 401, size=rng.integers(0, 30)) if trial % 3 else None
        mask = None if trial % 2 else rng.random(401) < [0.85, 0.1][trial % 4 == 0]
        k = [1, 10, 25][trial % 3]
        got, truth = index.search(q, k, exclude, mask), exact.search(q, k, exclude, mask)
        assert_same(got, truth, exact, q)
        assert 0 not in got.indices
        if exclude is not None:
            assert not set(got.indices.tolist()) & set(exclude.tolist())
        if mask is not None:
            assert mask[got.indices].all()


def test_fewer_items_than_k_everything_excluded_and_ties(client):
    v = clustered(6, 4)
    v[4] = v[2]  # an exact tie: the lower index first, as in ExactIndex
    index = QdrantIndex(v, "ip", client=client)
    q = v[2] + 0.01
    assert index.search(q, 10).indices.tolist() == ExactIndex(v, "ip").search(q, 10).indices.tolist()
    assert sorted(index.search(q, 10, exclude=[1, 2]).indices.tolist()) == [3, 4, 5, 6]
    assert len(index.search(q, 3, exclude=[1, 2, 3, 4, 5, 6]).indices) == 0
    mask = np.zeros(7, dtype=bool)
    mask[[3, 5]] = True
    assert sorted(index.search(q, 10, exclude=[5], mask=mask).indices.tolist()) == [3]
    assert len(index.search(q, 10, mask=np.zeros(7, dtype=bool)).indices) == 0


def test_points_carry_payloads_and_retired_rows_are_not_stored(client):
    v = clustered(30, 4)
    active = np.ones(31, dtype=bool)
    active[[0, 5, 6]] = False
    index = QdrantIndex(
        v,
        "ip",
        client=client,
        payload=lambda i: {"item_id": f"m{i}", "metadata": {"year": np.int64(1990 + i)}},
        active=active,
    )
    assert client.count(index.collection, exact=True).count == 28
    (point,) = client.retrieve(index.collection, [3], with_payload=True)
    assert point.payload["item_id"] == "m3" and point.payload["metadata"] == {"year": 1993}
    for q in np.random.default_rng(2).normal(size=(10, 4)):
        assert not {5, 6} & set(index.search(q, 30).indices.tolist())


def test_an_existing_collection_is_reused_synchronised_or_refused(client):
    v = clustered(200, 8)
    first = QdrantIndex(v, "ip", client=client, collection="items")
    assert first.uploaded == 200
    again = QdrantIndex(v.copy(), "ip", client=client, collection="items")
    assert again.uploaded == 0 and again.fingerprint == first.fingerprint

    # another catalogue version: 3 rows changed, 2 appended; only those 5 points are written
    v2 = np.vstack([v, clustered(2, 8, seed=9)[1:]])
    v2[[10, 20, 30]] *= 2
    with pytest.raises(ConfigError, match="collection 'items' holds other vectors"):
        QdrantIndex(v2, "ip", {"on_mismatch": "refuse"}, client=client, collection="items")
    second = QdrantIndex(v2, "ip", client=client, collection="items")
    assert (second.uploaded, second.deleted) == (5, 0)
    assert client.count("items", exact=True).count == 202
    truth = ExactIndex(v2, "ip")
    q = v2[10]
    assert_same(second.search(q, 10), truth.search(q, 10), truth, q)

    # the first index's vectors are gone: it refuses to answer with another model's scores
    with pytest.raises(IndexUnavailableError, match="no longer holds the vectors this process serves"):
        first.search(v2[10], 5)
    # ... but points of items it does not know (a newer catalogue version) are simply skipped
    third = QdrantIndex(v, "ip", client=client, collection="items")  # back to v: 3 rows rewritten, 2 deleted
    assert (third.uploaded, third.deleted) == (3, 2)
    assert first.search(v[10], 5).indices.tolist() == ExactIndex(v, "ip").search(v[10], 5).indices.tolist()

    # an upload that stopped half-way (the fingerprint is written last) is never taken as complete
    client.update_collection("items", metadata={FINGERPRINT_KEY: "incomplete"})
    with pytest.raises(ConfigError, match="'incomplete'"):
        QdrantIndex(v, "ip", {"on_mismatch": "refuse"}, client=client, collection="items")
    assert QdrantIndex(v, "ip", client=client, collection="items").uploaded == 0  # all points were fine

    # another vector size: the collection is made again
    other = QdrantIndex(clustered(50, 4), "ip", client=client, collection="items")
    assert other.uploaded == 50 and client.count("items", exact=True).count == 50


def test_a_collection_bert4rec_did_not_create_is_left_alone(client):
    from qdrant_client import models

    params = models.VectorParams(size=4, distance=models.Distance.DOT)
    client.create_collection("theirs", vectors_config=params)
    client.upsert("theirs", models.Batch(ids=[1, 2], vectors=[[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    with pytest.raises(ConfigError, match="'theirs' exists but was not created by bert4rec"):
        QdrantIndex(clustered(5, 4), "ip", client=client, collection="theirs")
    assert client.count("theirs", exact=True).count == 2


def test_row_hashes_see_every_changed_row():
    v = clustered(1000, 16)
    h = row_hashes(v)
    assert h.dtype == np.int64 and (h >= 0).all() and len(set(h.tolist())) == 1001
    w = v.copy()
    w[500, 3] = np.nextafter(w[500, 3], np.float32(np.inf))  # one bit of one value
    assert np.flatnonzero(row_hashes(w) != h).tolist() == [500]


def test_local_folder_persists_and_build_index_routes(tmp_path):
    v = clustered(50, 4)
    folder = tmp_path / "q"
    index = build_index(v, "qdrant", metric="cosine", qdrant={"path": str(folder), "collection": "t"})
    assert index.kind == "qdrant" and index.collection == "t-cosine"
    assert folder.is_dir()
    # the same process reuses its client for the folder (local mode locks it to one client)
    again = build_index(v, "qdrant", metric="cosine", qdrant={"path": folder, "collection": "t"})
    assert isinstance(again, QdrantIndex) and again.uploaded == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs a Qdrant server or a local folder: set qdrant_url"),
        ({"url": "http://x:6333", "path": "/tmp/q"}, "not both"),
        ({"url": "qdrant:6333"}, "must start with http:// or https://"),
        ({"path": ":memory:", "collection": "a/b"}, "qdrant_collection must be"),
        ({"path": ":memory:", "shard": 2}, "unknown qdrant option"),
        ({"path": ":memory:", "on_mismatch": "ignore"}, "on_mismatch must be"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ConfigError, match=message):
        QdrantOptions.from_mapping(options)
    with pytest.raises(ConfigError, match=message):
        build_index(clustered(5, 2), "qdrant", qdrant=options)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_is_one_clear_error():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(IndexUnavailableError, match=f"Qdrant at {url} failed on collection_exists") as err:
        QdrantIndex(clustered(5, 2), "ip", {"url": url, "timeout": 1})
    assert "\n" not in str(err.value)


def test_a_failing_client_fails_the_query_clearly(client):
    index = QdrantIndex(clustered(20, 4), "ip", client=client)
    client.close()
    with pytest.raises(IndexUnavailableError, match="failed on query_points"):
        index.search(np.ones(4), 5)


def test_without_qdrant_client_one_line_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "qdrant_client", None)  # import raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'bert4rec\[scale\]'") as err:
        build_index(clustered(5, 2), "qdrant", qdrant={"path": ":memory:"})
    assert str(err.value) == QDRANT_HINT


def same(a, b) -> None:
    """Two RecommendationLists: the same items and scores (only items whose scores tie to 1e-5 may swap)."""
    assert (a.path, a.history_length) == (b.path, b.history_length)
    assert len(a.items) == len(b.items)
    for ra, rb in zip(a.items, b.items, strict=True):
        assert ra.item_id == rb.item_id or abs(ra.score - rb.score) < 1e-5
    np.testing.assert_allclose([r.score for r in b.items], [r.score for r in a.items], atol=1e-5)


@pytest.mark.parametrize("max_filter_ids", [None, 10_000])
def test_recommender_with_qdrant_matches_exact_for_every_query_type(tiny_artifact, tmp_path, max_filter_ids):
    """The Recommender's model path (ip, bias folded in) and item_to_item (cosine) through Qdrant
    give the exact lists and scores, with and without filters and seen-item exclusion; filters
    applied in the client (local mode's default) or sent as has_id conditions (a server's)."""
    from bert4rec.artifacts import load_bundle
    from bert4rec.inference.recommender import Recommender

    bundle = load_bundle(tiny_artifact)
    exact = Recommender(bundle, index="exact", precompute=True)
    options = {"path": str(tmp_path / "q"), "max_filter_ids": max_filter_ids}
    served = Recommender(bundle, index="qdrant", qdrant=options, precompute=True)
    assert served.model_index.max_filter_ids == (max_filter_ids or 0)
    assert (served.model_index.kind, served.item_index.kind) == ("qdrant", "qdrant")
    assert (served.model_index.metric, served.item_index.metric) == ("ip", "cosine")
    genre = next(iter(exact.catalog.filter._columns["genres"].tokens))
    vocab = exact.vocab

    for filters in (None, {"genres": genre}):
        for seen in (True, False):
            for j, user in enumerate(vocab.user_ids[:8]):
                same(exact.user_to_item(user, 7, filters, seen), served.user_to_item(user, 7, filters, seen))
                item = vocab.item_ids[3 * j]
                same(
                    exact.contextual(user, item, 7, filters, seen),
                    served.contextual(user, item, 7, filters, seen),
                )
            for item in vocab.item_ids[:8]:
                same(exact.item_to_item(item, 7, filters), served.item_to_item(item, 7, filters))
            session = vocab.item_ids[3:9]
            same(exact.sequential(session, 7, filters, seen), served.sequential(session, 7, filters, seen))


def test_catalogue_updates_reach_the_collection(fused_artifact, tmp_path, minilm):
    """Adding items upserts their points, retiring deletes them; the lists stay the exact ones."""
    from bert4rec.inference.recommender import Recommender

    folder = tmp_path / "model"
    shutil.copytree(fused_artifact, folder)
    options = {"path": str(tmp_path / "q"), "collection": "cat"}
    served = Recommender.load(folder, index="qdrant", qdrant=options)
    served.enable_content(minilm)
    client = served.model_index._conn.client  # the process's client for this folder
    n = served.vocab.n_items
    assert client.count("cat-ip", exact=True).count == n

    served.add_item(901, metadata={"title": "Item 901", "genres": "Genre99"})
    assert served.model_index.uploaded == 1 and served.item_index.uploaded == 1
    assert client.count("cat-ip", exact=True).count == n + 1
    (point,) = client.retrieve("cat-ip", [n + 1], with_payload=True)
    assert point.payload["item_id"] == 901 and point.payload["metadata"] == {"genres": "Genre99"}
    only_new = {"genres": "Genre99"}
    user = served.vocab.user_ids[0]
    assert [r.item_id for r in served.user_to_item(user, 5, only_new).items] == [901]

    retired = served.vocab.item_ids[0]
    served.retire_items([retired])
    assert served.model_index.deleted == 1 and client.count("cat-cosine", exact=True).count == n
    exact = Recommender.load(folder, index="exact")  # the saved catalogue: 901 added, one retired
    for u in served.vocab.user_ids[:5]:
        a, b = exact.user_to_item(u, 10), served.user_to_item(u, 10)
        same(a, b)
        assert retired not in [r.item_id for r in b.items]
    item = served.vocab.item_ids[4]
    same(exact.item_to_item(item, 10), served.item_to_item(item, 10))

    # another replica on the same bundle and collections (serve --workers) that still serves the
    # trained catalogue: it never sets the collection back (which would hide item 901 from `served`)
    other = Recommender.load(folder, index="qdrant", qdrant=options, catalog=False)
    assert other.catalog.version == 0 and other.model_index.read_only
    assert (other.model_index.uploaded, other.model_index.deleted) == (0, 0)
    assert [r.item_id for r in served.user_to_item(user, 5, only_new).items] == [901]
    old = Recommender(other.bundle, index="exact", catalog=False)  # what `other` should answer:
    for u in served.vocab.user_ids[:5]:  # its version's items, less the ones retired since
        got = [r.item_id for r in other.user_to_item(u, 10).items]
        assert 901 not in got and retired not in got
        assert got == [r.item_id for r in old.user_to_item(u, 11).items if r.item_id != retired][:10]
    # it catches up at its next refresh, and finds the collection already holding that version
    assert other.refresh_catalog() and other.catalog.n_added == 1
    assert not other.model_index.read_only and other.model_index.uploaded == 0
