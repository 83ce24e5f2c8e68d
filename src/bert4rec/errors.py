"""Domain exceptions. Each message says what is wrong *and* what to do about it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class Bert4RecError(Exception):
    """Base class for every error this package raises on purpose."""


class DataError(Bert4RecError, ValueError):
    """Input data is missing, malformed or unusable (names the file, column, row or field)."""


class ConfigError(Bert4RecError, ValueError):
    """A configuration value is invalid (names the field)."""


class NotFittedError(Bert4RecError, RuntimeError):
    """A model was used before it was trained."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is not fitted: call fit(...) (or load a trained artifact) first.")


class TrainingDivergedError(Bert4RecError, RuntimeError):
    """The training loss became NaN or infinite."""


class ArtifactError(Bert4RecError, ValueError):
    """A saved model artifact is missing files, corrupted, or inconsistent with itself."""


class UnknownIdError(Bert4RecError, KeyError):
    """A user or item id is not in the model's vocabulary."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class QueryError(Bert4RecError, ValueError):
    """A recommendation query is malformed (empty session, k < 1, nothing to search with)."""


class FilterError(QueryError):
    """A metadata filter names an unknown field or a value of the wrong type.

    `field` is the offending field and `valid` the fields that can be filtered on, so that callers
    (the HTTP API) can phrase the message in their own terms.
    """

    def __init__(self, message: str, field: str, valid: list[str]) -> None:
        super().__init__(message)
        self.field = field
        self.valid = valid


class ContentUnavailableError(Bert4RecError, RuntimeError):
    """Text cold start was asked for but is not enabled, or its optional dependencies are missing."""


class IndexUnavailableError(Bert4RecError, RuntimeError):
    """The item index cannot answer: a vector database is unreachable or failed, or its collection
    was rebuilt from other vectors by another process (a query never gets stale scores)."""


class CatalogError(Bert4RecError, ValueError):
    """A catalogue update is malformed (empty or oversized text, unknown metadata field, wrong type).

    `field` names the offending part of the item ("item_id", "text", "metadata.<name>") so that
    callers (the HTTP API) can point at it. Nothing was changed.
    """

    def __init__(self, message: str, field: str = "item") -> None:
        super().__init__(message)
        self.field = field


class CatalogConflictError(CatalogError):
    """A catalogue update conflicts with the model: a trained item's id, or a bundle without text
    vectors (trained without content fusion) that cannot place a new item. Nothing was changed."""


class CatalogWriteError(Bert4RecError, OSError):
    """A catalogue update could not be saved beside the bundle; the previous catalogue stays."""


def closest_name(name: str, choices: Iterable[str]) -> str | None:
    """The valid name in `choices` closest to a mistyped `name` (difflib, cutoff 0.6), or None when
    nothing is close: the "did you mean ...?" of config and payload errors."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None
