"""Interaction logs: validate, clean, k-core filter and time-order them.

Loaders (see `bert4rec.data.datasets`) return a `RawData` whose `frame` has the canonical columns
`user_id`, `item_id`, `timestamp` (numeric) and optionally `rating`, in file order. `preprocess`
turns it into `Interactions`: implicit feedback, duplicates handled, users/items with too few
interactions removed, and each user's rows ordered by a STABLE sort on timestamp so ties keep file
order. Every dropped row is counted in `Interactions.stats`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from bert4rec.config import DataConfig
from bert4rec.errors import DataError

log = logging.getLogger(__name__)

ROW = "_row"  # original file order, used to break timestamp ties


@dataclass
class RawData:
    """What a loader produced, before any cleaning."""

    frame: pl.DataFrame  # user_id, item_id, timestamp[, rating] in file order
    items: pl.DataFrame | None  # item_id + metadata columns (title, genres, ...)
    source: str  # file path(s) the data came from, for error messages and fingerprints
    display_col: str | None = None  # the metadata column holding a human-readable title
    metadata_cols: list[str] = field(default_factory=list)


@dataclass
class Interactions:
    """Cleaned, time-ordered interactions (sorted by user, then time, ties in file order)."""

    frame: pl.DataFrame  # user_id, item_id, timestamp, _row
    items: pl.DataFrame | None
    source: str
    display_col: str | None
    metadata_cols: list[str]
    stats: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        """sha256 over the cleaned (user, item, timestamp) columns: identifies the exact data a run saw."""
        h = hashlib.sha256()
        for col in ("user_id", "item_id", "timestamp"):
            series = self.frame[col]
            if series.dtype.is_numeric():
                h.update(series.cast(pl.Float64).to_numpy().tobytes())
            else:
                h.update("\x1f".join(series.cast(pl.Utf8).to_list()).encode())
        return h.hexdigest()[:16]


def validate_frame(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """Check the canonical columns exist, are non-null and numeric where they must be."""
    if frame.height == 0:
        raise DataError(f"{source}: the data set is empty (no interaction rows)")
    for col in ("user_id", "item_id", "timestamp"):
        if col not in frame.columns:
            raise DataError(f"{source}: missing column {col!r}; columns present: {frame.columns}")
        nulls = frame[col].null_count()
        if nulls:
            first = int(frame.with_row_index("_i").filter(pl.col(col).is_null())["_i"][0])
            raise DataError(
                f"{source}: column {col!r} has {nulls} empty value(s); first at data row {first + 1}"
            )
    for col in ("user_id", "item_id"):
        frame = _integral_ids(frame, col, source)
    ts = frame["timestamp"]
    if ts.dtype.is_temporal():
        frame = frame.with_columns(pl.col("timestamp").dt.epoch("s"))
    elif not ts.dtype.is_numeric():
        as_num = ts.cast(pl.Float64, strict=False)
        bad = as_num.is_null() & ts.is_not_null()
        if bad.any():
            i = int(bad.arg_true()[0])
            raise DataError(
                f"{source}: column 'timestamp' must be numeric (Unix time) or a datetime; "
                f"data row {i + 1} has {ts[i]!r}"
            )
        frame = frame.with_columns(timestamp=as_num)
    if "rating" in frame.columns and not frame["rating"].dtype.is_numeric():
        as_num = frame["rating"].cast(pl.Float64, strict=False)
        bad = as_num.is_null() & frame["rating"].is_not_null()
        if bad.any():
            i = int(bad.arg_true()[0])
            raise DataError(
                f"{source}: column 'rating' must be numeric; data row {i + 1} has {frame['rating'][i]!r}"
            )
        frame = frame.with_columns(rating=as_num)
    if frame["timestamp"].dtype.is_float():
        bad = ~frame["timestamp"].is_finite()
        if bad.any():
            i = int(bad.arg_true()[0])
            raise DataError(
                f"{source}: column 'timestamp' has {int(bad.sum())} NaN or infinite value(s) "
                f"(first at data row {i + 1}: {frame['timestamp'][i]}); they cannot be ordered in time: "
                "fix or remove those rows"
            )
    return frame


def _integral_ids(frame: pl.DataFrame, col: str, source: str) -> pl.DataFrame:
    """Float ids (a CSV column like 1.0, 2.0) become integers, with a warning; an id that is not a
    whole number (2.5, NaN, inf) is an error naming the row: a model keyed by it could not be queried."""
    ids = frame[col]
    if not ids.dtype.is_float():
        return frame
    bad = ~ids.is_finite() | (ids != ids.floor()) | (ids.abs() >= 2.0**63)
    if bad.any():
        i = int(bad.arg_true()[0])
        raise DataError(
            f"{source}: column {col!r} holds {int(bad.sum())} value(s) that are not whole-number ids "
            f"(first at data row {i + 1}: {ids[i]}); ids must be integers or strings"
        )
    log.warning(
        "%s: column %r holds floating-point numbers; all %d are whole numbers, so they are read as "
        "integer ids (1.0 -> 1)",
        source,
        col,
        frame.height,
    )
    return frame.with_columns(pl.col(col).cast(pl.Int64))


def require_rankable(n_items: int, ks: list[int], source: str) -> None:
    """Refuse a catalogue too small to rank: with at most k items every model hits every target
    within the top k (HR@k = 1), so the metrics would say nothing. Raises DataError."""
    top = max([*ks, 10])  # the evaluator always reports @10
    if n_items <= top:
        raise DataError(
            f"{source}: only {n_items} item(s) left after cleaning, not more than k={top}: every model "
            f"would reach HR@{top} = 1. Use more data, lower data.min_item_interactions, or smaller eval.ks"
        )


def k_core(frame: pl.DataFrame, min_user: int, min_item: int) -> tuple[pl.DataFrame, int]:
    """Repeatedly drop items then users below the minimum count until both hold. Returns (frame, rounds)."""
    rounds = 0
    while True:
        rounds += 1
        before = frame.height
        frame = frame.filter(pl.len().over("item_id") >= min_item)
        frame = frame.filter(pl.len().over("user_id") >= min_user)
        if frame.height == before:
            return frame, rounds


def preprocess(raw: RawData, cfg: DataConfig) -> Interactions:
    """Clean raw interactions as in the BERT4Rec paper (implicit feedback, 5-core, time order)."""
    frame = validate_frame(raw.frame, raw.source)
    stats: dict[str, Any] = {"raw_interactions": frame.height}
    frame = frame.with_row_index(ROW)

    if cfg.min_rating is not None:
        if "rating" not in frame.columns:
            raise DataError(
                f"{raw.source}: min_rating={cfg.min_rating} is set but the data has no rating column"
            )
        kept = frame.filter(pl.col("rating") >= cfg.min_rating)
        stats["dropped_low_rating"] = frame.height - kept.height
        frame = kept
    if "rating" in frame.columns:  # implicit feedback from here on: free its memory before the copies
        frame = frame.drop("rating")

    dup_mask = frame.select(pl.struct("user_id", "item_id", "timestamp").is_duplicated()).to_series()
    n_dup_rows = int(dup_mask.sum())
    if n_dup_rows:
        first = frame.filter(dup_mask).row(0, named=True)
        where = (
            f"{raw.source}: {n_dup_rows} rows repeat the same (user, item, timestamp), e.g. user "
            f"{first['user_id']!r} item {first['item_id']!r} at data row {first[ROW] + 1}"
        )
        if cfg.duplicates == "error":
            raise DataError(where + "; deduplicate the file or set data.duplicates='drop'")
        if cfg.duplicates == "drop":
            deduped = frame.unique(
                subset=["user_id", "item_id", "timestamp"], keep="first", maintain_order=True
            )
            stats["dropped_duplicates"] = frame.height - deduped.height
            log.warning(
                "%s; dropped %d duplicate rows (kept the first of each)", where, stats["dropped_duplicates"]
            )
            frame = deduped

    n_users_raw = frame["user_id"].n_unique()
    short_users = int((frame.group_by("user_id").len()["len"] < cfg.min_user_interactions).sum())
    stats["users_below_min"] = short_users
    if n_users_raw and short_users / n_users_raw > 0.2:
        log.warning(
            "%d of %d users (%.0f%%) have fewer than %d interactions and will be dropped; "
            "for short sessions consider a lower data.min_user_interactions "
            "(e.g. the ecommerce-session preset)",
            short_users,
            n_users_raw,
            100 * short_users / n_users_raw,
            cfg.min_user_interactions,
        )
    before = frame.height
    frame, rounds = k_core(frame, cfg.min_user_interactions, cfg.min_item_interactions)
    stats["dropped_min_count"] = before - frame.height
    stats["k_core_rounds"] = rounds
    if frame.height == 0:
        raise DataError(
            f"{raw.source}: no interactions left after requiring >= {cfg.min_user_interactions} per user and "
            f">= {cfg.min_item_interactions} per item; "
            "lower data.min_user_interactions / min_item_interactions"
        )
    if frame["item_id"].n_unique() < 2:
        raise DataError(
            f"{raw.source}: only one item left after cleaning; a recommender needs at least 2 items to rank "
            "(check data.item_col, or lower data.min_item_interactions)"
        )
    # STABLE sort: equal timestamps keep their file order (the _row column makes that explicit).
    frame = frame.sort(["user_id", "timestamp", ROW], maintain_order=True).select(
        "user_id", "item_id", "timestamp", ROW
    )
    stats.update(
        users=frame["user_id"].n_unique(),
        items=frame["item_id"].n_unique(),
        interactions=frame.height,
    )
    stats["avg_length"] = round(stats["interactions"] / stats["users"], 2)
    stats["density"] = round(stats["interactions"] / (stats["users"] * stats["items"]), 5)
    items = raw.items
    if items is not None:
        if items["item_id"].dtype.is_float() and frame["item_id"].dtype.is_integer():
            # the interactions' float ids were read as integers above: match the metadata's to them
            items = items.filter(pl.col("item_id") == pl.col("item_id").floor()).with_columns(
                pl.col("item_id").cast(pl.Int64)
            )
        items = items.filter(pl.col("item_id").is_in(frame["item_id"].unique().implode()))
    return Interactions(frame, items, raw.source, raw.display_col, list(raw.metadata_cols), stats)


def generate_interactions(n_users: int = 600, n_items: int = 300, seed: int = 0) -> RawData:
    """A synthetic log with real sequential structure, for demos and tests.

    Items form `n_items // 10` genres; each user walks mostly forward through a chain of items
    (item i is usually followed by i+1 of the same chain), with some popularity-driven noise. A
    sequential model can learn the chain; popularity cannot, so the demo shows a real difference.
    """
    rng = np.random.default_rng(seed)
    n_genres = max(2, n_items // 10)
    # Zipf-like popularity (weight 1/rank) over a random permutation of the items
    pop = 1.0 / (1.0 + rng.permutation(n_items))
    pop /= pop.sum()
    users, items, times = [], [], []
    for u in range(n_users):
        length = int(rng.integers(8, 40))
        cur = int(rng.integers(0, n_items))
        t = int(rng.integers(1_000_000, 2_000_000))
        seen = set()
        for _ in range(length):
            r = rng.random()
            if r < 0.7:
                cur = (cur + 1) % n_items
            elif r < 0.85:
                cur = (cur + int(rng.integers(2, 5))) % n_items
            else:
                cur = int(rng.choice(n_items, p=pop))
            if cur in seen:
                continue
            seen.add(cur)
            users.append(u + 1)
            items.append(cur + 1)
            times.append(t)
            t += int(rng.integers(1, 5000))
    frame = pl.DataFrame(
        {"user_id": users, "item_id": items, "timestamp": times},
        schema={"user_id": pl.Int64, "item_id": pl.Int64, "timestamp": pl.Int64},
    )
    genre_names = [f"Genre{g}" for g in range(n_genres)]
    item_ids = np.arange(1, n_items + 1)
    meta = pl.DataFrame(
        {
            "item_id": item_ids,
            "title": [f"Item {i} ({genre_names[(i - 1) * n_genres // n_items]})" for i in item_ids],
            "genres": [genre_names[(i - 1) * n_genres // n_items] for i in item_ids],
        }
    )
    return RawData(
        frame, meta, f"generated(n_users={n_users}, n_items={n_items}, seed={seed})", "title", ["genres"]
    )
