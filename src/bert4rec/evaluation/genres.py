"""Item genres for the genre-level metrics: an item table column -> a multi-hot matrix over item indices.

`eval.genre_column` names the column (default `genres`, as ML-1M's movies.dat and the generated
data have). A text value holds one or more genres separated by `|` ("Action|Comedy"); a list column
holds them as elements; any other type (a category id, a boolean) is one genre, its text. Genres are
compared after trimming spaces and case-folding ("Comedy" == "comedy "). Items without a row in the
item table, or with an empty value, have no genre: they never count as sharing one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from bert4rec.data.vocab import Vocab
from bert4rec.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_GENRE_COLUMN = "genres"
SEPARATOR = "|"


@dataclass(frozen=True)
class ItemGenres:
    """Genres of every trained item: `matrix[j, g]` is True when item index j has genre `names[g]`."""

    column: str
    names: list[str]  # one per matrix column, as first spelled in the item table
    matrix: np.ndarray  # (n_items + 1, n_genres) bool; row 0 (PAD) is all False

    @property
    def n_items_with_genres(self) -> int:
        return int(self.matrix[1:].any(axis=1).sum())


def item_genres(items: pl.DataFrame | None, vocab: Vocab, column: str | None) -> ItemGenres | None:
    """The multi-hot genre matrix of `vocab`'s items from `items[column]`, or None (no genre metrics).

    None when `column` is None, or when it is the default `genres` and the item table lacks it (or the
    data has no item table), or when no trained item has a genre (logged). Any other column name that
    the item table lacks raises ConfigError naming `eval.genre_column` and the columns there are.
    """
    if column is None:
        return None
    columns = [] if items is None else [c for c in items.columns if c != "item_id"]
    if items is None or "item_id" not in items.columns or column not in columns:
        if column == DEFAULT_GENRE_COLUMN:
            log.info("the data has no %r item column: genre metrics are left out", column)
            return None
        have = ", ".join(repr(c) for c in columns) if columns else "none (the data has no item table)"
        raise ConfigError(
            f"eval.genre_column={column!r}: the item table has no such column; item columns: {have}. "
            "Name one of them, or set eval.genre_column=null to leave genre metrics out"
        )
    # item table rows of trained items, as (item index, value)
    ids = items["item_id"].to_list()
    keep = [r for r, item_id in enumerate(ids) if vocab.has_item(item_id)]
    rows = np.asarray([vocab.item_idx(ids[r]) for r in keep], dtype=np.int64)
    series = items[column][keep] if keep else items[column].clear()
    frame = pl.DataFrame({"idx": rows, "genre": series})
    dtype = series.dtype
    if isinstance(dtype, pl.List):
        frame = frame.explode("genre").with_columns(pl.col("genre").cast(pl.Utf8))
    else:
        frame = frame.with_columns(pl.col("genre").cast(pl.Utf8))
        if dtype in (pl.Utf8, pl.Categorical, pl.Enum) or dtype == pl.String:
            frame = frame.with_columns(pl.col("genre").str.split(SEPARATOR)).explode("genre")
    frame = (
        frame.with_columns(pl.col("genre").str.strip_chars())
        .filter(pl.col("genre").is_not_null() & (pl.col("genre") != ""))
        .with_columns(pl.col("genre").str.to_lowercase().alias("key"))
    )
    if frame.height == 0:
        log.warning("no trained item has a value in item column %r: genre metrics are left out", column)
        return None
    # one matrix column per case-folded genre, named by its first spelling, sorted by that name
    spelled = frame.group_by("key", maintain_order=True).agg(pl.col("genre").first()).sort("key")
    code = {key: g for g, key in enumerate(spelled["key"].to_list())}
    matrix = np.zeros((vocab.n_items + 1, len(code)), dtype=bool)
    cols = np.fromiter((code[key] for key in frame["key"]), dtype=np.int64, count=frame.height)
    matrix[frame["idx"].to_numpy(), cols] = True
    genres = ItemGenres(column, spelled["genre"].to_list(), matrix)
    log.info(
        "genre metrics from item column %r: %d genres, %d of %d items have one",
        column,
        len(code),
        genres.n_items_with_genres,
        vocab.n_items,
    )
    return genres
