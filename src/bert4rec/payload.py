"""The spec's training payload: its field names (`max_sequence_length`, `model_depth`, ...) read from
JSON or YAML and mapped onto an `ExperimentConfig`.

Pure mapping, no training: `load_payload(path)` or `parse_payload(dict)` validate the fields and
`TrainingPayload.to_config()` builds the native config. Without a `preset`, a field left out takes
the spec's default (the defaults below); with one, a field left out keeps the preset's value, so
only the fields the payload names override it. `FIELD_MAP` is the one table of the mapping
(docs/training-payload.md prints it with the reasons where our defaults differ).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bert4rec.config import (
    PRESETS,
    TRANSFORMER_TYPES,
    ExperimentConfig,
    TransformerType,
    build_config,
    deep_merge,
)
from bert4rec.errors import ConfigError, closest_name

# payload field -> the native config field it sets ("section.field"); the fields with a special
# mapping (sequence_sampling, use_attention_mask, top_k, metadata_columns) are handled in overrides()
FIELD_MAP: dict[str, str] = {
    "data_path": "data.path",
    "items_path": "data.items_path",
    "user_column": "data.user_col",
    "item_column": "data.item_col",
    "timestamp_column": "data.time_col",
    "metadata_columns": "data.metadata_cols",
    "display_name": "data.display_col",
    "max_sequence_length": "model.max_len",
    "sequence_sampling": "train.windows_per_user",
    "masking_ratio": "train.mask_prob",
    "hidden_size": "model.hidden_size",
    "model_depth": "model.num_layers",
    "attention_heads": "model.num_heads",
    "batch_size": "train.batch_size",
    "training_epochs": "train.epochs",
    "learning_rate": "train.lr",
    "dropout_rate": "model.dropout",
    "weight_tying": "model.tie_weights",
    "gradient_clipping": "train.grad_clip",
    "negative_samples": "eval.n_negatives",
    "top_k": "eval.ks",
}

# how each sequence_sampling value lays out the training windows (train.windows_per_user)
SAMPLING: dict[str, int | None] = {"sliding_window": None, "last_window": 1}


class PayloadError(ConfigError):
    """A training payload is invalid. `errors` holds (field, message) pairs, each naming the field."""

    def __init__(self, errors: list[tuple[str, str]], source: str = "training payload") -> None:
        self.errors = errors
        self.source = source
        super().__init__(f"{source}: " + "; ".join(f"{field}: {msg}" for field, msg in errors))


class TrainingPayload(BaseModel):
    """A training job as the spec writes it (snake_case names, the spec's defaults), plus where the
    data is (`data_path`, optional `items_path`), which model (`model_type`) and an optional preset."""

    model_config = ConfigDict(extra="forbid")

    # where the data is and what to train
    data_path: Path = Field(description="Interactions file (CSV/TSV/Parquet) on the training machine.")
    items_path: Path | None = Field(
        default=None, description="Optional item metadata file (item column + metadata columns)."
    )
    model_type: TransformerType = Field(default="bert4rec", description=" | ".join(TRANSFORMER_TYPES) + ".")
    preset: str | None = Field(
        default=None,
        description="A bert4rec preset (e.g. ml-1m, ecommerce-session); fields left out keep its values.",
    )
    # the spec's fields
    user_column: str = Field(min_length=1, description="Column with the user id.")
    item_column: str = Field(min_length=1, description="Column with the item id.")
    timestamp_column: str = Field(min_length=1, description="Column that orders interactions in time.")
    metadata_columns: list[str] = Field(
        default_factory=list,
        description="Item metadata columns; giving any turns on the hybrid engine (MiniLM content fusion).",
    )
    display_name: str | None = Field(default=None, description="Column with the item's human-readable label.")
    max_sequence_length: int = Field(default=50, ge=2, description="Past interactions the model reads.")
    sequence_sampling: Literal["sliding_window", "last_window"] = Field(
        default="sliding_window", description="How training sequences are cut."
    )
    masking_ratio: float = Field(default=0.15, gt=0.0, lt=1.0, description="Share of items hidden (Cloze).")
    hidden_size: int = Field(default=64, ge=2, description="Embedding width; divisible by attention_heads.")
    model_depth: int = Field(default=2, ge=1, description="Transformer layers.")
    attention_heads: int = Field(default=4, ge=1, description="Attention heads.")
    batch_size: int = Field(default=128, ge=1, description="Sequences per step.")
    training_epochs: int = Field(default=10, ge=1, description="Passes over the data.")
    learning_rate: float = Field(default=0.001, gt=0.0, description="AdamW learning rate.")
    dropout_rate: float = Field(default=0.1, ge=0.0, lt=1.0)
    weight_tying: bool = Field(default=False, description="Share input and output item embeddings.")
    gradient_clipping: float | None = Field(
        default=1.0, ge=0.0, description="Max gradient norm; 0 or null turns clipping off."
    )
    use_attention_mask: bool = Field(default=True, description="Padding is never attended (only true).")
    negative_samples: int = Field(
        default=100, ge=1, description="Negatives per user in the sampled ranking metrics (evaluation)."
    )
    top_k: int = Field(default=10, ge=1, le=1000, description="Cut-off K reported in the metrics.")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError(f"unknown preset {value!r}; choose one of: {', '.join(sorted(PRESETS))}")
        return value

    @field_validator("use_attention_mask")
    @classmethod
    def _mask_always_on(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "false is not supported: padding positions are never attended (the padding mask is "
                "part of the model); leave the field out or set it to true"
            )
        return value

    @field_validator("metadata_columns")
    @classmethod
    def _distinct_columns(cls, value: list[str]) -> list[str]:
        repeated = sorted({c for c in value if value.count(c) > 1})
        if repeated or any(not c for c in value):
            raise ValueError(f"columns must be non-empty and distinct, got {value}")
        return value

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> TrainingPayload:
        if self.hidden_size % self.attention_heads:
            divisors = [h for h in range(1, 17) if self.hidden_size % h == 0]
            raise PayloadError(
                [
                    (
                        "attention_heads",
                        f"hidden_size ({self.hidden_size}) must be divisible by attention_heads "
                        f"({self.attention_heads}); try attention_heads in {divisors}",
                    )
                ]
            )
        return self

    def overrides(self) -> dict[str, Any]:
        """The native config settings this payload makes (nested dict for `build_config`).

        With a preset only the fields the payload sets (and the required ones) are included, so the
        preset keeps the rest; without one every field is, with the spec's defaults."""
        given = self.model_fields_set if self.preset else set(type(self).model_fields)
        values = self.model_dump(mode="json")
        out: dict[str, Any] = {"model_type": self.model_type, "data": {"dataset": "file"}}
        for name in given:
            value = values[name]
            if name == "sequence_sampling":
                value = SAMPLING[value]
            elif name == "gradient_clipping":
                value = value or None  # 0 turns clipping off
            elif name == "top_k":
                value = sorted({1, 5, 10, 20, value})
            elif name in ("use_attention_mask", "model_type", "preset") or name not in FIELD_MAP:
                continue
            section, field = FIELD_MAP[name].split(".")
            out.setdefault(section, {})[field] = value
        if self.metadata_columns:  # the spec: metadata columns activate the hybrid engine
            out.setdefault("model", {})["content_fusion"] = True
            if "weight_tying" not in self.model_fields_set:
                # only tied output vectors carry the text part that lets a brand-new item be recommended
                out["model"]["tie_weights"] = True
        return out

    def to_config(self, extra: dict[str, Any] | None = None) -> ExperimentConfig:
        """The validated native config for `model_type`: the preset, this payload's settings over
        it, then `extra` native overrides (e.g. the CLI's `--set`) over both.

        Raises PayloadError when the combination is invalid, naming the payload field involved."""
        overrides = deep_merge(self.overrides(), extra or {})
        try:
            return build_config(self.preset, overrides).for_model(self.model_type)
        except ConfigError as err:
            named = [name for name, path in FIELD_MAP.items() if f"{path}:" in str(err)]
            raise PayloadError(
                [(named[0] if named else "payload", f"the mapped configuration is invalid ({err})")]
            ) from None


def _describe(err: dict[str, Any]) -> tuple[str, str]:
    field = ".".join(str(p) for p in err["loc"]) or "payload"
    if err["type"] == "extra_forbidden":
        guess = closest_name(str(err["loc"][0]), TrainingPayload.model_fields)
        hint = f"; did you mean {guess!r}?" if guess else ""
        return field, f"unknown field{hint} (valid fields: {', '.join(TrainingPayload.model_fields)})"
    if err["type"] == "missing":
        return field, "required field is missing"
    got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
    msg = str(err["msg"]).removeprefix("Value error, ")
    return field, f"{msg}{got}"


def parse_payload(raw: Any, source: str = "training payload") -> TrainingPayload:
    """Validate a decoded payload (a mapping). Raises PayloadError naming every bad field."""
    if not isinstance(raw, dict):
        raise PayloadError(
            [("payload", f"must be a mapping of field names to values, got {type(raw).__name__}")], source
        )
    try:
        return TrainingPayload.model_validate(raw)
    except PayloadError as err:
        raise PayloadError(err.errors, source) from None
    except ValidationError as err:
        errors = []
        for e in err.errors():
            ctx_error = e.get("ctx", {}).get("error")
            errors.append(ctx_error.errors[0] if isinstance(ctx_error, PayloadError) else _describe(dict(e)))
        raise PayloadError(errors, source) from None


def load_payload(path: Path | str) -> TrainingPayload:
    """Read a payload file: `.json` as JSON, anything else (`.yaml`, `.yml`) as YAML.

    Raises PayloadError for a missing or unparsable file (with the line) or a bad field."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PayloadError([("payload", "file not found")], str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise PayloadError([("payload", f"cannot read the file ({err})")], str(path)) from None
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise PayloadError(
            [("payload", f"invalid JSON at line {err.lineno}: {err.msg}")], str(path)
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PayloadError([("payload", f"invalid YAML{where}: {err}")], str(path)) from None
    return parse_payload(raw, str(path))
