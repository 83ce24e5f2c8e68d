"""Column names of an interactions file from its header only (used to check a job's payload)."""

from __future__ import annotations

import gzip

import polars as pl
import pytest

from bert4rec.data.datasets import table_columns
from bert4rec.errors import DataError


def test_columns_of_csv_tsv_gz_and_parquet(tmp_path):
    frame = pl.DataFrame({"user": [1, 2], "item, name": ["a", "b"], "ts": [3, 4]})
    frame.write_csv(tmp_path / "e.csv")
    frame.write_csv(tmp_path / "e.tsv", separator="\t")
    frame.write_parquet(tmp_path / "e.parquet")
    (tmp_path / "e.csv.gz").write_bytes(gzip.compress((tmp_path / "e.csv").read_bytes()))
    (tmp_path / "e.txt").write_text("user;item;ts\n1;2;3\n")
    for name in ("e.csv", "e.tsv", "e.parquet", "e.csv.gz"):
        assert table_columns(tmp_path / name) == ["user", "item, name", "ts"], name
    assert table_columns(tmp_path / "e.txt") == ["user", "item", "ts"]  # separator guessed from the header
    assert table_columns(tmp_path / "e.txt", column_names=["u", "i"]) == ["u", "i"]


def test_missing_or_unreadable_file_is_named(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        table_columns(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv"):
        table_columns(tmp_path / "empty.csv")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="bad.parquet: cannot read the column names"):
        table_columns(tmp_path / "bad.parquet")
