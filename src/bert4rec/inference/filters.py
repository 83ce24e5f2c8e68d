"""Item metadata filters: `{"genres": "Comedy"}` -> a boolean mask over item indices.

Matching rules, per column type of `items.parquet`:
    text      the whole value or one of its `|`-separated parts, case-insensitively
              (ML-1M genres "Action|Comedy" match "comedy"; a title matches only as a whole)
    list      membership, case-insensitively for text elements
    number    equality (a numeric string such as "1995" is accepted)
    boolean   equality (true / false, or the strings "true" / "false")
A list of values means any of them; several fields must all match. Items without metadata never
match a filter. The masks are built once from inverted indexes, so a query costs a few dict hits.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from bert4rec.data.vocab import Vocab
from bert4rec.errors import FilterError

FilterScalar = str | int | float | bool
FilterValue = FilterScalar | Sequence[FilterScalar]
SEPARATOR = "|"


@dataclass
class _Column:
    kind: Literal["text", "number", "boolean"]
    n: int  # n_items + 1 (row 0 is PAD and never matches)
    tokens: dict[str, list[int]] = field(default_factory=dict)  # text: casefolded token -> item indices
    values: np.ndarray | None = None  # number: float64 with NaN; boolean: int8 with -1 = missing


def _text_tokens(value: Any) -> set[str]:
    if isinstance(value, list | tuple):
        return {str(v).strip().casefold() for v in value if v is not None}
    text = str(value).strip()
    parts = {text.casefold()}
    if SEPARATOR in text:
        parts |= {p.strip().casefold() for p in text.split(SEPARATOR) if p.strip()}
    return parts


def _build_column(series: pl.Series, rows: np.ndarray, n: int) -> _Column:
    dtype = series.dtype
    if dtype == pl.Boolean:
        flags = np.full(n, -1, dtype=np.int8)
        for i, v in zip(rows, series.to_list(), strict=True):
            if v is not None:
                flags[i] = int(v)
        return _Column("boolean", n, values=flags)
    if dtype.is_numeric():
        nums = np.full(n, np.nan)
        nums[rows] = series.cast(pl.Float64).fill_null(np.nan).to_numpy()
        return _Column("number", n, values=nums)
    if not isinstance(dtype, pl.List):
        series = series.cast(pl.Utf8)  # dates and other types compare by their text
    index: dict[str, list[int]] = defaultdict(list)
    for i, v in zip(rows, series.to_list(), strict=True):
        if v is not None:
            for token in _text_tokens(v):
                index[token].append(int(i))
    return _Column("text", n, tokens=dict(index))


class MetadataFilter:
    """Boolean masks over item indices (n_items + 1,) from filters on item metadata columns."""

    def __init__(self, items: pl.DataFrame | None, vocab: Vocab) -> None:
        self.n = vocab.n_items + 1
        self._columns: dict[str, _Column] = {}
        if items is None or "item_id" not in items.columns:
            return
        ids = items["item_id"].to_list()
        keep = [j for j, item_id in enumerate(ids) if vocab.has_item(item_id)]
        rows = np.asarray([vocab.item_idx(ids[j]) for j in keep], dtype=np.int64)
        known = items[keep] if keep else items.clear()
        for name in known.columns:
            if name != "item_id":
                self._columns[name] = _build_column(known[name], rows, self.n)

    @property
    def fields(self) -> list[str]:
        """Metadata fields that can be filtered on."""
        return sorted(self._columns)

    def mask(self, filters: Mapping[str, FilterValue] | None) -> np.ndarray | None:
        """(n_items + 1,) bool, True = the item passes every filter; None when there is nothing to filter.

        Raises FilterError naming an unknown field (with the valid ones) or a value of the wrong type.
        """
        if not filters:
            return None
        out = np.ones(self.n, dtype=bool)
        out[0] = False
        for name, wanted in filters.items():
            column = self._columns.get(name)
            if column is None:
                valid = ", ".join(self.fields) or "none (this model has no item metadata)"
                raise FilterError(f"unknown filter field {name!r}; valid fields: {valid}", name, self.fields)
            values = list(wanted) if isinstance(wanted, list | tuple) else [wanted]
            if not values:
                raise FilterError(f"filter {name!r} has an empty list of values", name, self.fields)
            hit = np.zeros(self.n, dtype=bool)
            for value in values:
                hit |= self._match(name, column, value)
            out &= hit
        return out

    def _match(self, name: str, column: _Column, value: Any) -> np.ndarray:
        def wrong(expected: str) -> FilterError:
            return FilterError(
                f"filter {name!r} expects {expected}, got {value!r} ({type(value).__name__})",
                name,
                self.fields,
            )

        hit = np.zeros(self.n, dtype=bool)
        if column.kind == "text":
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise wrong("text")
            hit[column.tokens.get(str(value).strip().casefold(), [])] = True
            return hit
        assert column.values is not None
        if column.kind == "boolean":
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                value = value.strip().lower() == "true"
            if not isinstance(value, bool):
                raise wrong("a boolean (true or false)")
            return column.values == int(value)
        if isinstance(value, bool):
            raise wrong("a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise wrong("a number") from None
        if math.isnan(number):
            raise wrong("a number")
        return column.values == number
