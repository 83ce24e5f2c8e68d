"""The item catalogue in the library: items added after training (from text through the trained
fusion), retired items, persistence beside the bundle, atomic writes, concurrent reads, bad input."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
import torch

from bert4rec.artifacts import bundle_version
from bert4rec.errors import (
    ArtifactError,
    CatalogConflictError,
    CatalogError,
    CatalogWriteError,
    UnknownIdError,
)
from bert4rec.inference import catalog as catalog_module
from bert4rec.inference.catalog import CATALOG_DIR, LOCK_FILE, NewItem, hidden_sample, new_item_bias
from bert4rec.inference.recommender import Recommender

NEW_GENRE = "Genre99"  # no trained item has it: a filter on it leaves the new items only


@pytest.fixture
def folder(fused_artifact, tmp_path):
    """A private copy of the fused bundle (the catalogue is written beside it)."""
    target = tmp_path / "model"
    shutil.copytree(fused_artifact, target)
    return target


@pytest.fixture
def rec(folder, minilm):
    r = Recommender.load(folder)
    r.enable_content(minilm)
    return r


def reload(folder, minilm) -> Recommender:
    r = Recommender.load(folder)
    r.enable_content(minilm)
    return r


def test_new_item_vector_is_its_text_through_the_fusion(rec, minilm):
    n = rec.catalog.n_trained
    info = rec.add_item(
        "900", text="a brand new release", metadata={"title": "Item 900 (Genre99)", "genres": NEW_GENRE}
    )
    assert info == {"version": 1, "trained": n, "added": 1, "retired": 0, "active": n + 1}
    assert rec.vocab.item_idx(900) == n + 1  # integer ids stay integers
    model = rec.state.model
    text = f"Item 900 (Genre99). genres: {NEW_GENRE}. a brand new release"
    assert rec.catalog.added[0].embedded_text == text
    expected = model.content.proj(torch.from_numpy(minilm.encode([text]))[0])
    torch.testing.assert_close(model.item_weights()[n + 1], expected)  # no ID part
    assert not model.item_emb.weight[n + 1].any()
    # score calibration (the default): on average over the users' sample, the new item scores like
    # the trained item at the new_item_exposure quantile
    hidden = hidden_sample(rec.bundle.model, rec.bundle.sequences, rec.max_len)
    mean_scores = (hidden @ model.item_weights().T + model.head_bias).mean(0)
    expected = mean_scores[1 : n + 1].quantile(rec.new_item_exposure)
    torch.testing.assert_close(mean_scores[n + 1], expected, atol=1e-4, rtol=0)
    rec.set_new_item_exposure(0.5, "bias")
    torch.testing.assert_close(
        rec.state.model.head_bias[n + 1].item(), new_item_bias(rec.bundle.model, n, 0.5)
    )
    # the trained model is untouched; the trained items score as before
    assert rec.bundle.model.n_items == n
    torch.testing.assert_close(model.item_weights()[: n + 1], rec.bundle.model.item_weights())


def test_new_item_is_recommended_by_every_query_type_and_is_a_query_item(rec):
    rec.add_item(901, metadata={"title": "Item 901 (Genre99)", "genres": NEW_GENRE})
    only_new = {"genres": NEW_GENRE}  # filters see the new item's metadata
    user = rec.vocab.user_ids[0]
    trained_item = rec.vocab.item_ids[0]
    lists = [
        rec.user_to_item(user, k=5, filters=only_new),
        rec.contextual(user, trained_item, k=5, filters=only_new),
        rec.sequential([trained_item, rec.vocab.item_ids[1]], k=5, filters=only_new),
        rec.item_to_item(trained_item, k=5, filters=only_new),
    ]
    for result in lists:
        assert [r.item_id for r in result.items] == [901]
        assert result.items[0].title == "Item 901 (Genre99)"
    # as a query item
    for result in (
        rec.sequential([trained_item, 901], k=5),
        rec.contextual(user, 901, k=5),
        rec.item_to_item(901, k=5),
    ):
        assert len(result.items) == 5 and 901 not in [r.item_id for r in result.items]
    assert rec.item_to_item(901, k=5).path == "item_vectors"
    # text queries see the new item's text
    assert rec.item_to_item(item_text="Item 901 (Genre99). genres: Genre99", k=1).items[0].item_id == 901
    assert rec.search_items("item 901")[0]["item_id"] == 901
    assert rec.item_summary(901) == {
        "item_id": 901,
        "title": "Item 901 (Genre99)",
        "metadata": {"genres": NEW_GENRE},
    }


def all_recommended(rec, user) -> set:
    k = rec.vocab.n_items
    ids = set()
    for result in (
        rec.user_to_item(user, k=k, filter_seen=False),
        rec.sequential([rec.vocab.item_ids[2]], k=k, filter_seen=False),
        rec.item_to_item(rec.vocab.item_ids[3], k=k),
        rec.item_to_item(item_text="Genre1", k=k),
        rec.user_to_item("unknown-user", k=k),
    ):
        ids |= {r.item_id for r in result.items}
    return ids


def test_retired_items_are_never_recommended_and_everything_persists(rec, folder, minilm):
    rec.add_items(
        [NewItem(902, metadata={"title": "Item 902", "genres": NEW_GENRE}), NewItem(903, text="x y z")]
    )
    trained = rec.vocab.item_ids[5]
    info = rec.retire_items([trained, 903])
    assert info["version"] == 2 and info["retired"] == 2 and info["added"] == 2
    user = rec.vocab.user_ids[1]
    seen = all_recommended(rec, user)
    assert trained not in seen and 903 not in seen and 902 in seen
    assert trained not in [i["item_id"] for i in rec.search_items("", limit=100)]
    # histories holding a retired item still read
    assert len(rec.sequential([trained, 903], k=3).items) == 3
    # restart: the newest version is loaded from the catalogue folder, scores identical
    again = reload(folder, minilm)
    assert again.catalog_info() == rec.catalog_info()
    assert again.vocab.item_ids == rec.vocab.item_ids
    assert all_recommended(again, user) == seen
    h = np.array([1, 2, 3])
    torch.testing.assert_close(again.scorer.score(np.array([-1]), [h]), rec.scorer.score(np.array([-1]), [h]))
    # updating an added item replaces its text and metadata in place, and un-retires it
    again.add_item(903, metadata={"title": "Item 903", "genres": NEW_GENRE})
    assert again.vocab.item_idx(903) == rec.vocab.item_idx(903)
    assert again.catalog_info()["retired"] == 1 and again.title(903) == "Item 903"
    assert [p.name for p in sorted((bundle_version(folder) / CATALOG_DIR).iterdir())] == [
        LOCK_FILE,  # the inter-process update lock stays (an empty file)
        "catalog-000001.safetensors",
        "catalog-000002.safetensors",
        "catalog-000003.safetensors",
    ]
    # without the catalogue (catalog=False) the model serves as trained
    assert Recommender.load(folder, catalog=False).catalog_info()["version"] == 0


@pytest.mark.parametrize("crash_at", ["write", "rename"])
def test_a_crash_mid_write_leaves_the_previous_catalogue(rec, folder, minilm, monkeypatch, crash_at):
    rec.add_item(904, metadata={"title": "Item 904", "genres": NEW_GENRE})
    before = rec.catalog_info()

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    # "write": the temporary file holds the bytes but the process dies before they are flushed;
    # "rename": it dies between the flushed file and the rename
    target = "os.fsync" if crash_at == "write" else "os.replace"
    monkeypatch.setattr(f"bert4rec.io.{target}", crash)
    with pytest.raises(CatalogWriteError, match="nothing changed"):
        rec.add_item(905, metadata={"title": "Item 905", "genres": NEW_GENRE})
    assert rec.catalog_info() == before and not rec.vocab.has_item(905)  # still serving the old version
    monkeypatch.undo()
    files = sorted(p.name for p in (bundle_version(folder) / CATALOG_DIR).iterdir())
    assert files == [LOCK_FILE, "catalog-000001.safetensors"]  # no new version, no temporary file
    # a process killed between writing and renaming leaves a temporary file: ignored on load
    (bundle_version(folder) / CATALOG_DIR / ".catalog-000002.safetensors.abc.tmp").write_bytes(b"partial")
    assert reload(folder, minilm).catalog_info() == before


def test_an_unreadable_or_foreign_catalogue_file_is_named(rec, folder):
    rec.add_item(906, text="something new")
    rec.retire_items([906])
    path = bundle_version(folder) / CATALOG_DIR / "catalog-000002.safetensors"
    data = path.read_bytes()
    # a retired id the model does not know (the file was edited or belongs elsewhere)
    path.write_bytes(data.replace(b"[906]", b"[999]"))
    with pytest.raises(ArtifactError, match="catalog-000002.safetensors: does not fit the model"):
        Recommender.load(folder)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ArtifactError, match="catalog-000002.safetensors: unreadable catalogue file"):
        Recommender.load(folder)
    path.unlink()  # removing the newest version serves the previous one
    assert Recommender.load(folder).catalog_info()["version"] == 1


def test_concurrent_queries_never_see_half_an_update(rec):
    """Readers rank every item while a writer adds six items one by one, then retires two: each list
    must be exactly the recommendable items of one version, never a mix."""
    trained = frozenset(rec.vocab.item_ids)
    added = [950 + j for j in range(6)]
    versions = [trained | set(added[:j]) for j in range(7)] + [trained | set(added[2:])]
    stop = threading.Event()
    errors: list[BaseException] = []
    seen_sizes: set[int] = set()

    def read() -> None:
        while not stop.is_set():
            try:
                state = rec.state
                assert state.model.n_items == state.catalog.n_items == state.item_index.vectors.shape[0] - 1
                result = rec.sequential([1, 2], k=10_000, filter_seen=False)
                ids = frozenset(r.item_id for r in result.items)
                assert ids in versions, sorted(ids - trained)
                seen_sizes.add(len(ids))
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)
                return

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for item_id in added:
            rec.add_item(item_id, metadata={"title": f"Item {item_id}", "genres": NEW_GENRE})
        rec.retire_items([950, 951])
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not errors, errors[0]
    assert rec.catalog_info()["version"] == 7
    assert len(seen_sizes) > 1  # the readers did run during the updates


BAD = [
    (NewItem(1, text="a trained id"), CatalogConflictError, "item 1 is a trained item"),
    (NewItem(907, text="   "), CatalogError, "text is empty"),
    (NewItem(907, text="x" * 2001), CatalogError, "at most 2000"),
    (
        NewItem(907, metadata={"colour": "red"}),
        CatalogError,
        "unknown metadata field 'colour'; fields: title, genres",
    ),
    (NewItem(907, metadata={"genres": 5}), CatalogError, "metadata field 'genres' expects a string, got 5"),
    (NewItem("abc", text="x"), CatalogError, "item id 'abc' is not an integer"),
    (NewItem(907), CatalogError, "item 907 has no text"),
    (NewItem(True, text="x"), CatalogError, "item id must be a string or an integer"),
]


@pytest.mark.parametrize(("item", "error", "message"), BAD, ids=[m for _, _, m in BAD])
def test_bad_items_are_refused_and_change_nothing(rec, folder, item, error, message):
    with pytest.raises(error, match=message):
        rec.add_items([item])
    assert rec.catalog_info()["version"] == 0 and not (bundle_version(folder) / CATALOG_DIR).exists()


def test_bad_retirements_and_models_without_text_vectors(rec, tiny_artifact):
    with pytest.raises(UnknownIdError, match="unknown item id 12345"):
        rec.retire_items([12345])
    rec.retire_items([2])
    with pytest.raises(UnknownIdError, match="item 2 is already retired"):
        rec.retire_items([2])
    with pytest.raises(CatalogError, match="the same item id is given twice"):
        rec.add_items([NewItem(908, text="a"), NewItem("908", text="b")])
    id_only = Recommender.load(tiny_artifact)
    assert not id_only.has_text_vectors
    with pytest.raises(CatalogConflictError, match="trained without content fusion"):
        id_only.add_item(908, text="new")


def test_exposure_knob_moves_new_items_bias(rec):
    rec.add_item(909, text="a new item")
    n = rec.catalog.n_trained
    biases = rec.bundle.model.head_bias[1 : n + 1]
    rec.set_new_item_exposure(0.0, "bias")
    assert rec.state.model.head_bias[n + 1].item() == pytest.approx(biases.min().item())
    rec.set_new_item_exposure(1.0)
    assert rec.state.model.head_bias[n + 1].item() == pytest.approx(biases.max().item())
    with pytest.raises(ValueError, match="between 0 and 1"):
        catalog_module.new_item_bias(rec.bundle.model, n, 1.5)


def test_enabling_text_keeps_the_built_indexes(folder, minilm):
    """Turning on text queries adds the text index only: the item and intent indexes (an HNSW
    build of minutes at a million items) and the scorer are the ones already built."""
    r = Recommender.load(folder)
    before = r.state
    r.enable_content(minilm)
    assert r.content is not None and before.content is None
    assert (r.item_index, r.model_index, r.scorer) == (before.item_index, before.model_index, before.scorer)
    assert r.state.catalog is before.catalog


@pytest.mark.parametrize("text", ["9_07", " 907", "907 ", "+907", "0907", "٩٠٧"])
def test_new_integer_ids_must_be_canonical_decimal_text(rec, text):
    """Integer catalogues: a text becomes an id only in canonical form, as in every lookup, so
    "9_07" cannot create item 907 (which "907" then would not find as a different item)."""
    with pytest.raises(CatalogError, match="canonical decimal form") as err:
        rec.add_item(text, metadata={"title": "Item 907", "genres": NEW_GENRE})
    assert err.value.field == "item_id" and not rec.vocab.has_item(907)
    rec.add_item("907", metadata={"title": "Item 907", "genres": NEW_GENRE})
    assert 907 in rec.vocab.item_ids  # the canonical text gives the integer id
