"""ML-1M from the shared data folder (skipped when it is absent): the paper's numbers and file order.

One load (about a second) is shared by the module's tests.
"""

from __future__ import annotations

import polars as pl
import pytest
from helpers import shared_data_dir

from bert4rec.config import DataConfig
from bert4rec.data.datasets import load_raw
from bert4rec.data.interactions import preprocess

SHARED = shared_data_dir()
ML1M = SHARED / "ml-1m" if SHARED else None

pytestmark = pytest.mark.skipif(
    ML1M is None or not (ML1M / "ratings.dat").is_file(),
    reason="needs ../shared/data/ml-1m/ratings.dat (or $BERT4REC_SHARED_DATA); not present here",
)


@pytest.fixture(scope="module")
def ml1m():
    cfg = DataConfig(dataset="ml-1m", data_dir=SHARED)  # finds the ml-1m/ subfolder
    raw = load_raw(cfg)
    return raw, preprocess(raw, cfg)


def test_ml1m_has_the_papers_size_after_5_core(ml1m):
    raw, data = ml1m
    assert raw.frame.height == 1_000_209
    assert data.stats["users"] == 6_040
    assert data.stats["items"] == 3_416
    assert data.stats["interactions"] == 999_611
    assert raw.items is not None and raw.items.height == 3_883
    titles = dict(raw.items.select("item_id", "title").rows())
    assert titles[73] == "Misérables, Les (1995)"  # latin-1 decoded


def test_ml1m_order_is_the_file_order_including_ties(ml1m):
    raw, data = ml1m
    # the shared ratings.dat lists each user's rows in exact time order with non-decreasing
    # timestamps, so after filtering the stable sort must reproduce the file order exactly
    kept = raw.frame.with_row_index("_row").join(data.frame.select("_row"), on="_row", how="semi")
    expected = kept.sort("user_id", maintain_order=True)
    assert expected["item_id"].to_list() == data.frame["item_id"].to_list()
    first = data.frame.filter(pl.col("user_id") == 1)
    file_first = raw.frame.filter(pl.col("user_id") == 1).head(3)
    assert file_first["timestamp"].to_list()[1] == file_first["timestamp"].to_list()[2]  # a tie in the file
    assert first["item_id"].head(3).to_list() == file_first["item_id"].to_list() == [3186, 1721, 1022]
