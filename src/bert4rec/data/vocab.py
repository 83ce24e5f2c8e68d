"""External ids <-> internal indices.

Items: PAD = 0, real items 1..n_items, MASK = n_items + 1. Users: 0..n_users-1.
Score tensors everywhere have n_items + 1 columns so that column j is item index j (column 0, PAD,
is never recommended).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bert4rec.errors import UnknownIdError

PAD = 0
# the one spelling of an integer that maps a text id onto an integer id: no sign, spaces,
# underscores, leading zeros or non-ASCII digits, all of which int() accepts ("1_0" -> 10, "+1" -> 1)
_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")


def canonical_int(text: str) -> int | None:
    """The integer `text` spells in canonical decimal form ("10", "-3", "0"), else None: "1_0",
    " 10 ", "+10", "010" and non-ASCII digits are no integers here, so two different texts never
    name the same integer id."""
    return int(text) if _CANONICAL_INT.fullmatch(text) else None


@dataclass
class Vocab:
    item_ids: list[Any]  # external item id of index i + 1
    user_ids: list[Any]  # external user id of index u
    _item_index: dict[Any, int] = field(init=False, repr=False)
    _user_index: dict[Any, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._item_index = {item_id: i + 1 for i, item_id in enumerate(self.item_ids)}
        self._user_index = {user_id: u for u, user_id in enumerate(self.user_ids)}

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def mask_idx(self) -> int:
        return self.n_items + 1

    def has_item(self, item_id: Any) -> bool:
        return self._coerce(item_id, self._item_index) is not None

    def has_user(self, user_id: Any) -> bool:
        return self._coerce(user_id, self._user_index) is not None

    @staticmethod
    def _coerce(key: Any, index: dict[Any, int]) -> int | None:
        """Look a key up as given, then in the other of int / str: ids typed in a CLI or JSON come as
        either. A text maps onto an integer id only in its canonical decimal form ("10", never
        "1_0", " 10 " or "+10"), so two different texts never find the same item; booleans are no ids."""
        if isinstance(key, bool):
            return None
        if key in index:
            return index[key]
        if isinstance(key, int | np.integer):
            return index.get(str(key))
        if isinstance(key, str) and (number := canonical_int(key)) is not None:
            return index.get(number)
        return None

    def item_idx(self, item_id: Any) -> int:
        idx = self._coerce(item_id, self._item_index)
        if idx is None:
            raise UnknownIdError(f"unknown item id {item_id!r} (not in the {self.n_items} trained items)")
        return idx

    def user_idx(self, user_id: Any) -> int:
        idx = self._coerce(user_id, self._user_index)
        if idx is None:
            raise UnknownIdError(f"unknown user id {user_id!r} (not among the {self.n_users} trained users)")
        return idx

    def encode_items(self, item_ids: Iterable[Any]) -> np.ndarray:
        return np.fromiter((self.item_idx(i) for i in item_ids), dtype=np.int64)

    def decode_items(self, idx: Sequence[int] | np.ndarray) -> list[Any]:
        return [self.item_ids[int(i) - 1] for i in idx]

    def to_dict(self) -> dict[str, Any]:
        return {"item_ids": list(self.item_ids), "user_ids": list(self.user_ids)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocab:
        return cls(list(d["item_ids"]), list(d["user_ids"]))
