"""Several processes serving one bundle (`serve --workers`, `bert4rec items add` beside a server):
each update builds on every version saved before it, and `refresh_catalog` serves the newest."""

from __future__ import annotations

import shutil

import pytest

from bert4rec.errors import CatalogWriteError, UnknownIdError
from bert4rec.inference.catalog import LOCK_FILE
from bert4rec.inference.recommender import Recommender

META = {"title": "Item 9xx (Genre99)", "genres": "Genre99"}


@pytest.fixture
def folder(fused_artifact, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(fused_artifact, target)
    return target


def load(folder, minilm) -> Recommender:
    rec = Recommender.load(folder)
    rec.enable_content(minilm)
    return rec


def test_updates_from_two_processes_build_on_each_other(folder, minilm):
    a, b = load(folder, minilm), load(folder, minilm)  # two workers, both at version 0
    a.add_item(901, "first new item", META)
    assert not b.vocab.has_item(901)  # b has not looked yet
    # b's update starts from the newest saved version, not from the version b serves
    b.add_item(902, "second new item", META)
    assert b.catalog_info()["version"] == 2
    assert b.vocab.has_item(901) and b.vocab.has_item(902)
    assert b.vocab.item_idx(901) == a.vocab.item_idx(901)  # same index in every process
    # a picks b's version up when it refreshes; nothing to do the second time
    assert a.refresh_catalog() is True
    assert a.refresh_catalog() is False
    assert a.catalog_info() == b.catalog_info()
    assert [r.item_id for r in a.sequential([901], k=3, filters={"genres": "Genre99"}).items] == [902]
    # a retire on top of both, then a fresh process sees all three changes
    a.retire_items([901])
    c = load(folder, minilm)
    assert c.catalog_info() == {"version": 3, "trained": 60, "added": 2, "retired": 1, "active": 61}


def test_checks_see_what_other_processes_saved(folder, minilm):
    a, b = load(folder, minilm), load(folder, minilm)
    a.add_item(903, "new", META)
    b.retire_items([903])  # b did not know 903 before: it refreshes before checking the id
    with pytest.raises(UnknownIdError, match="retired"):
        a.retire_items([903])  # already retired by b
    assert a.catalog_info()["retired"] == 1


def test_a_held_lock_refuses_the_update_and_changes_nothing(folder, minilm, monkeypatch):
    from filelock import FileLock

    from bert4rec.inference import catalog as catalog_module

    a = load(folder, minilm)
    a.add_item(904, "new", META)
    monkeypatch.setattr(catalog_module, "LOCK_TIMEOUT_S", 0.2)
    lock_path = a.store.folder / LOCK_FILE
    holder = FileLock(lock_path)
    with holder:  # another process in the middle of an update (filelock is per-object re-entrant)
        b = load(folder, minilm)
        with pytest.raises(CatalogWriteError, match="catalogue lock"):
            b.add_item(905, "new", META)
    assert b.catalog_info()["version"] == 1 and not b.vocab.has_item(905)
    assert a.store.versions() == [1]
