"""Input data faults are refused (naming file, column and row) or converted with a warning:
non-finite timestamps, float ids, a catalogue too small to rank."""

from __future__ import annotations

import logging
import math

import polars as pl
import pytest
from typer.testing import CliRunner

from bert4rec.cli import app
from bert4rec.config import DataConfig
from bert4rec.data.datasets import load_interactions
from bert4rec.data.interactions import RawData, preprocess, require_rankable
from bert4rec.errors import DataError


def _cfg(**kw: object) -> DataConfig:
    return DataConfig(
        **{"dataset": "generated", "min_user_interactions": 1, "min_item_interactions": 1, **kw}
    )


def _raw(users, items, times, item_meta=None) -> RawData:  # type: ignore[no-untyped-def]
    frame = pl.DataFrame({"user_id": users, "item_id": items, "timestamp": times})
    return RawData(frame, item_meta, "log.csv", "title" if item_meta is not None else None)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_timestamps_are_refused_with_count_and_row(bad):
    raw = _raw([1, 1, 2, 2], [1, 2, 1, 2], [1.0, bad, 3.0, bad])
    with pytest.raises(
        DataError, match=r"log.csv: column 'timestamp' has 2 NaN or infinite value\(s\) \(first at data row 2"
    ):
        preprocess(raw, _cfg())


def test_nan_timestamps_in_a_csv_file_are_refused(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\n1,1,1\n1,2,NaN\n2,1,3\n2,2,4\n")
    with pytest.raises(DataError, match="column 'timestamp' has 1 NaN or infinite value"):
        load_interactions(_cfg(dataset="file", path=path))


def test_integral_float_ids_are_read_as_integers_with_a_warning(caplog):
    meta = pl.DataFrame({"item_id": [1.0, 2.0, 3.0], "title": ["a", "b", "c"]})
    raw = _raw([1.0, 1.0, 2.0, 2.0], [1.0, 2.0, 2.0, 3.0], [1, 2, 3, 4], meta)
    with caplog.at_level(logging.WARNING):
        out = preprocess(raw, _cfg())
    assert out.frame["item_id"].dtype == pl.Int64 and out.frame["user_id"].dtype == pl.Int64
    assert out.frame["item_id"].to_list() == [1, 2, 2, 3]
    assert out.items is not None and out.items["item_id"].to_list() == [1, 2, 3]
    assert "column 'item_id' holds floating-point numbers" in caplog.text
    assert "column 'user_id' holds floating-point numbers" in caplog.text


@pytest.mark.parametrize("bad", [2.5, math.nan, math.inf])
def test_non_integral_float_ids_are_refused_naming_column_and_row(bad):
    raw = _raw([1, 1, 2], [1.0, 2.0, bad], [1, 2, 3])
    with pytest.raises(
        DataError,
        match=r"log.csv: column 'item_id' holds 1 value\(s\) that are not whole-number ids "
        r"\(first at data row 3",
    ):
        preprocess(raw, _cfg())


def test_float_ids_in_a_csv_file(tmp_path, caplog):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\n1,1.0,1\n1,2.0,2\n2,1.0,3\n2,2.0,4\n")
    with caplog.at_level(logging.WARNING):
        out = load_interactions(_cfg(dataset="file", path=path))
    assert out.frame["item_id"].to_list() == [1, 2, 1, 2]
    path.write_text("user_id,item_id,timestamp\n1,1.0,1\n1,2.5,2\n")
    with pytest.raises(DataError, match="column 'item_id' holds 1 value"):
        load_interactions(_cfg(dataset="file", path=path))


def test_a_one_item_catalogue_is_refused():
    with pytest.raises(DataError, match="only one item left after cleaning"):
        preprocess(_raw([1, 2, 3], [7, 7, 7], [1, 2, 3]), _cfg())


def test_a_catalogue_not_larger_than_k_is_refused():
    require_rankable(11, [1, 5, 10], "x")
    with pytest.raises(DataError, match=r"only 10 item\(s\) left after cleaning, not more than k=10"):
        require_rankable(10, [1, 5], "x")
    with pytest.raises(DataError, match="k=20"):
        require_rankable(15, [1, 20], "x")


def test_cli_refuses_a_tiny_catalogue_instead_of_reporting_hr_1(tmp_path):
    path = tmp_path / "log.csv"
    rows = [f"{u},{i},{u * 10 + i}" for u in range(1, 30) for i in range(1, 6)]
    path.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "--path", str(path), "--set", "train.epochs=1", "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert "only 5 item(s) left after cleaning" in result.output and "Traceback" not in result.output
    assert not out.exists()
