"""Domain exceptions. Each message says what is wrong *and* what to do about it."""

from __future__ import annotations


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
