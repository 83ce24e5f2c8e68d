"""preprocess: validation, duplicates, min_rating, iterative k-core, stable time order, stats, fingerprint."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import polars as pl
import pytest

from bert4rec.config import DataConfig
from bert4rec.data.interactions import RawData, k_core, preprocess, validate_frame
from bert4rec.errors import DataError


def raw_of(rows: list[tuple], columns: tuple[str, ...] = ("user_id", "item_id", "timestamp")) -> RawData:
    return RawData(pl.DataFrame(rows, schema=list(columns), orient="row"), None, "test.csv")


def cfg(**kw: object) -> DataConfig:
    base: dict[str, object] = {"dataset": "generated", "min_user_interactions": 1, "min_item_interactions": 1}
    base.update(kw)
    return DataConfig(**base)


def sequences(frame: pl.DataFrame) -> dict:
    return {u: items for u, items in frame.group_by("user_id", maintain_order=True).agg("item_id").rows()}


def test_tiny_raw_is_cleaned_and_ordered(tiny_raw):
    out = preprocess(tiny_raw, cfg())
    assert out.frame.columns == ["user_id", "item_id", "timestamp", "_row"]
    # user 1 has c and b at the same time 30: file order (c, then b) is kept
    assert sequences(out.frame) == {1: ["a", "c", "b", "d"], 2: ["a", "b", "e"], 3: ["b", "c", "d"], 4: ["a"]}
    assert out.stats["raw_interactions"] == 11 and out.stats["interactions"] == 11
    assert out.stats["users"] == 4 and out.stats["items"] == 5
    assert out.display_col == "title" and out.items is not None and out.items.height == 5


def test_stable_sort_keeps_file_order_for_equal_timestamps():
    # user 7's rows arrive out of time order; the three rows at t=5 must keep their file order x, y, z
    rows = [(7, "late", 9), (7, "x", 5), (3, "only", 1), (7, "y", 5), (7, "early", 1), (7, "z", 5)]
    out = preprocess(raw_of(rows), cfg())
    assert sequences(out.frame) == {3: ["only"], 7: ["early", "x", "y", "z", "late"]}
    assert out.frame["_row"].to_list() == [2, 4, 1, 3, 5, 0]  # _row is the original file position


def test_stable_sort_on_many_ties_matches_python_stable_sort():
    rng = np.random.default_rng(0)
    n = 5000
    users, items, times = rng.integers(0, 50, n), rng.integers(0, 400, n), rng.integers(0, 20, n)
    rows = list(zip(users.tolist(), items.tolist(), times.tolist(), strict=True))
    out = preprocess(raw_of(rows), cfg(duplicates="keep"))
    expected = sorted(range(n), key=lambda i: (users[i], times[i]))  # Python's sort is stable
    assert out.frame["_row"].to_list() == expected


@pytest.mark.parametrize("how", ["drop", "keep", "error"])
def test_duplicates(how, caplog):
    rows = [(1, "a", 1), (1, "a", 1), (1, "b", 2), (1, "a", 1), (2, "a", 1), (1, "a", 3)]  # 3 copies of row 0
    if how == "error":
        with pytest.raises(DataError) as err:
            preprocess(raw_of(rows), cfg(duplicates="error"))
        msg = str(err.value)
        assert msg.startswith("test.csv: 3 rows repeat the same (user, item, timestamp)")
        assert "user 1 item 'a' at data row 1" in msg and "data.duplicates='drop'" in msg
        return
    with caplog.at_level(logging.WARNING):
        out = preprocess(raw_of(rows), cfg(duplicates=how))
    if how == "drop":
        assert out.stats["dropped_duplicates"] == 2
        assert out.frame["_row"].to_list() == [0, 2, 5, 4]  # the first copy is the one kept
        assert "dropped 2 duplicate rows" in caplog.text
    else:
        assert "dropped_duplicates" not in out.stats
        assert out.stats["interactions"] == 6


def test_only_exact_duplicates_count():
    # same user and item at different times is a repeat consumption, not a duplicate
    out = preprocess(raw_of([(1, "a", 1), (1, "a", 2), (1, "a", 1), (1, "b", 3)]), cfg())
    assert out.stats["dropped_duplicates"] == 1 and out.stats["interactions"] == 3


def test_min_rating(tiny_raw):
    out = preprocess(tiny_raw, cfg(min_rating=4))
    assert out.stats["dropped_low_rating"] == 4  # ratings 3, 1, 2, 3
    assert sequences(out.frame) == {1: ["a", "c"], 2: ["a", "b"], 3: ["b", "c", "d"]}
    assert out.stats["raw_interactions"] == 11 and out.stats["interactions"] == 7


def test_min_rating_without_rating_column_is_an_error():
    with pytest.raises(DataError, match=r"test.csv: min_rating=4.0 is set but the data has no rating column"):
        preprocess(raw_of([(1, 1, 1)]), cfg(min_rating=4))


def test_k_core_is_iterative():
    # min 2 per user and per item. Round 1 drops item c (1 user), then user 3 (left with d only);
    # that leaves d with 1 user, so round 2 drops d and then user 5; round 3 changes nothing.
    rows = [(1, "a", 1), (1, "b", 2), (2, "a", 1), (2, "b", 2)]
    rows += [(3, "c", 1), (3, "d", 2), (5, "d", 1), (5, "a", 2)]
    out = preprocess(raw_of(rows), cfg(min_user_interactions=2, min_item_interactions=2))
    assert sequences(out.frame) == {1: ["a", "b"], 2: ["a", "b"]}
    assert out.stats["k_core_rounds"] == 3
    assert out.stats["dropped_min_count"] == 4
    assert out.stats["users_below_min"] == 0  # counted before filtering: every user starts with 2


def _k_core_reference(rows: list[tuple], min_user: int, min_item: int) -> set[tuple]:
    rows = list(rows)
    while True:
        items = Counter(r[1] for r in rows)
        kept = [r for r in rows if items[r[1]] >= min_item]
        users = Counter(r[0] for r in kept)
        kept = [r for r in kept if users[r[0]] >= min_user]
        if len(kept) == len(rows):
            return set(kept)
        rows = kept


def test_k_core_matches_a_brute_force_fixed_point():
    rng = np.random.default_rng(1)
    pairs = zip(rng.integers(0, 300, 3000).tolist(), rng.zipf(1.6, 3000).tolist(), strict=True)
    rows = sorted({(u, i, 0) for u, i in pairs})
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    out, rounds = k_core(frame, 5, 5)
    assert set(out.rows()) == _k_core_reference(rows, 5, 5)
    assert rounds > 1
    assert out.group_by("user_id").len()["len"].min() >= 5 and out.group_by("item_id").len()["len"].min() >= 5


def test_nothing_left_after_filtering_is_an_error():
    with pytest.raises(DataError) as err:
        preprocess(raw_of([(1, "a", 1), (1, "b", 2), (2, "a", 3)]), cfg(min_user_interactions=5))
    msg = str(err.value)
    assert msg.startswith("test.csv: no interactions left after requiring >= 5 per user and >= 1 per item")
    assert "min_user_interactions" in msg


def test_warns_when_many_users_are_short(caplog):
    rows = [(u, i, i) for u in range(10) for i in range(3 if u < 4 else 6)]  # 4 of 10 users have 3 < 5
    with caplog.at_level(logging.WARNING, logger="bert4rec.data.interactions"):
        out = preprocess(raw_of(rows), cfg(min_user_interactions=5))
    assert out.stats["users_below_min"] == 4 and out.stats["users"] == 6
    assert "4 of 10 users (40%) have fewer than 5 interactions" in caplog.text
    assert "ecommerce-session" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bert4rec.data.interactions"):
        preprocess(raw_of(rows), cfg(min_user_interactions=3))
    assert caplog.text == ""


def test_stats_add_up(tiny_raw):
    out = preprocess(tiny_raw, cfg(min_user_interactions=3, min_item_interactions=2))
    s = out.stats
    dropped = s.get("dropped_low_rating", 0) + s.get("dropped_duplicates", 0) + s["dropped_min_count"]
    assert s["raw_interactions"] - dropped == s["interactions"] == out.frame.height
    assert s["avg_length"] == round(s["interactions"] / s["users"], 2)
    assert out.items is not None and set(out.items["item_id"]) == set(out.frame["item_id"])


def test_fingerprint_is_stable_and_changes_with_the_data(tiny_raw):
    a = preprocess(tiny_raw, cfg()).fingerprint
    assert a == preprocess(tiny_raw, cfg()).fingerprint and len(a) == 16
    moved = tiny_raw.frame.with_columns(pl.col("timestamp") + (pl.col("item_id") == "e"))
    changed = RawData(moved, None, "x")
    assert preprocess(changed, cfg()).fingerprint != a  # one timestamp moved by one second
    fewer = RawData(tiny_raw.frame.head(10), None, "x")
    assert preprocess(fewer, cfg()).fingerprint != a
    assert preprocess(tiny_raw, cfg(min_rating=4)).fingerprint != a  # same file, different cleaning


def _frame(**cols: list) -> pl.DataFrame:
    return pl.DataFrame(cols)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (_frame(user_id=[], item_id=[], timestamp=[]), "the data set is empty"),
        (_frame(user_id=[1], item_id=[2]), r"missing column 'timestamp'; columns present: \['user_id'"),
        (_frame(user_id=[1, None], item_id=[2, 3], timestamp=[1, 2]), "'user_id' has 1 empty value.*row 2"),
        (_frame(user_id=[1, 1], item_id=[2, 3], timestamp=["5", "later"]), "data row 2 has 'later'"),
        (_frame(user_id=[1], item_id=[2], timestamp=[1], rating=["good"]), "'rating' must be numeric"),
    ],
)
def test_validate_frame_errors_name_file_column_and_row(frame, match):
    with pytest.raises(DataError, match=match) as err:
        validate_frame(frame, "log.csv")
    assert str(err.value).startswith("log.csv: ")


def test_validate_frame_converts_numeric_strings_and_datetimes():
    out = validate_frame(pl.DataFrame({"user_id": [1], "item_id": [2], "timestamp": ["17.5"]}), "f")
    assert out["timestamp"].to_list() == [17.5]
    when = pl.Series([0, 86_400_000_000]).cast(pl.Datetime("us"))
    out = validate_frame(pl.DataFrame({"user_id": [1, 1], "item_id": [2, 3], "timestamp": when}), "f")
    assert out["timestamp"].to_list() == [0, 86_400]
