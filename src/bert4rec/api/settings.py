"""Server settings from the environment (`BERT4REC_MODEL`, `BERT4REC_TEXT_COLD_START`, ...).

Every limit here has a `bert4rec serve` option of the same name (`max_body_bytes` ->
`--max-body-bytes`); docs/serving-security.md explains the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bert4rec.errors import ConfigError

MIN_API_KEY_LENGTH = 16
# the limits where 0 (an option or a variable) means "off", which the settings hold as None
ZERO_IS_OFF = ("max_concurrency", "request_timeout", "slow_request_timeout")


def _split_list(value: Any) -> Any:
    """`"a.example, b.example"` -> `["a.example", "b.example"]` (env vars and option values)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ServeSettings(BaseSettings):
    """What `bert4rec serve` and `create_app()` use when not told otherwise."""

    model_config = SettingsConfigDict(env_prefix="BERT4REC_", extra="ignore")

    model: Path | None = Field(default=None, description="Model folder written by `bert4rec train`.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    torch_threads: int | None = Field(
        default=1,
        ge=1,
        description="Intra-op threads per request (None = torch's default). One request is a batch of one: "
        "extra threads only add synchronisation (tens of ms on a busy CPU); concurrency comes from "
        "serving requests in parallel.",
    )
    text_cold_start: bool = Field(
        default=False,
        description="Load MiniLM and item text vectors so item_to_item accepts item_text for unknown items.",
    )
    # read when create_app() loads the model itself (each `serve --workers N` process does)
    backend: Literal["torch", "onnx"] = Field(
        default="torch", description="torch or onnx (see `bert4rec serve --backend`)."
    )
    index: str = Field(default="auto", description="Item vector search: exact, hnsw, auto or qdrant.")
    index_threshold: int = Field(default=200_000, ge=1, description="Items above which auto uses hnsw.")
    # ---- index qdrant: the item vectors in a Qdrant server or cluster (docs/serving-scale.md)
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server or cluster of `index qdrant`, e.g. http://qdrant:6333."
    )
    qdrant_path: Path | None = Field(
        default=None,
        description="Or a folder for qdrant-client's local mode (one process: development and tests).",
    )
    qdrant_collection: str = Field(
        default="bert4rec",
        description="Prefix of the two Qdrant collections (<name>-ip: the model path, <name>-cosine: "
        "item_to_item). Give each model its own.",
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="API key of the Qdrant server.")
    qdrant_timeout: float = Field(default=10.0, gt=0, description="Seconds per request to the Qdrant server.")
    qdrant_exact: bool = Field(
        default=False,
        description="Let the Qdrant server scan exhaustively instead of searching its HNSW graph.",
    )
    intents_cache: bool = Field(
        default=False,
        description="Reuse / write the user intent vectors beside the model (intents.safetensors).",
    )
    gc_freeze: bool = Field(
        default=True,
        description="Move the objects alive once the model is loaded out of the garbage collector's "
        "reach (gc.freeze): full collections then skip the model's millions of long-lived objects, "
        "which paused every request for ~250 ms under load (p99 307 -> 64 ms, docs/serving-scale.md).",
    )
    catalog_sync_s: float = Field(
        default=2.0,
        ge=0,
        description="Seconds between checks for a catalogue version saved by another process (another "
        "worker of `serve --workers`, `bert4rec items add`); 0 = never (then a restart picks it up).",
    )
    jobs_dir: Path | None = Field(
        default=None,
        description="Folder of training jobs; enables POST /jobs and POST /model (off when None).",
    )
    max_jobs: int = Field(
        default=1, ge=1, description="Training jobs running at once; more wait in the queue."
    )
    max_queued_jobs: int = Field(default=16, ge=0, description="Queued jobs beyond those; more answer 429.")

    # ---- request limits (class 1 and 9 of issue 15)
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1,
        description="Largest request body; a longer one is refused with 413 before it is read or parsed "
        "(Content-Length checked first, streamed bytes counted). The largest valid /recommend body "
        "(10,000 session ids) is well under 1 MiB.",
    )
    max_concurrency: int | None = Field(
        default=64,
        ge=1,
        description="Requests handled at once; the next one is answered 503 with Retry-After at once "
        "instead of waiting in an unbounded queue (GET /health is exempt). None = no limit.",
    )
    request_timeout: float | None = Field(
        default=10.0,
        gt=0,
        description="Seconds a request may take before it is answered 504 (the work already started in a "
        "worker thread runs to its end; its result is dropped). None = no timeout.",
    )
    slow_request_timeout: float | None = Field(
        default=600.0,
        gt=0,
        description="The timeout of the writes that load a model or rebuild the served state (POST /model, "
        "POST /jobs, PUT and DELETE /items): they may take minutes on a large catalogue, and a 504 "
        "while the change still lands would mislead. None = no timeout.",
    )
    retry_after_s: int = Field(default=1, ge=1, description="The Retry-After header of a 503.")

    # ---- deployment hygiene (class 10)
    api_key: SecretStr | None = Field(
        default=None,
        description="When set, requests other than the public read-only ones (GET /health, /items, /demo, "
        "/docs and POST /recommend) must send it in the X-API-Key header.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"],
        description="Host header values accepted (comma-separated in the environment; `*.example.com` "
        "wildcards); other hosts get 400. Default: any.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser (CORS); empty = CORS off.",
    )

    def qdrant_options(self) -> dict[str, Any]:
        """The `QdrantOptions` fields for `Recommender(index="qdrant", qdrant=...)` (None = default)."""
        key = self.qdrant_api_key.get_secret_value() if self.qdrant_api_key is not None else None
        return {
            "url": self.qdrant_url or None,
            "path": str(self.qdrant_path) if self.qdrant_path is not None else None,
            "api_key": key,
            "collection": self.qdrant_collection,
            "timeout": self.qdrant_timeout,
            "exact": self.qdrant_exact,
        }

    def environment(self) -> dict[str, str]:
        """These settings as `BERT4REC_*` variables, which `ServeSettings()` reads back equal: how
        `serve --workers N` hands what it parsed (options, environment, API key file) to its worker
        processes. Secrets are included: the variables are for child processes, not for logs."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                if name not in ZERO_IS_OFF:
                    continue  # unset, and None is the default: nothing to hand on
                value = 0  # "no limit": 0 reads back as None
            elif isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, list):
                value = ",".join(value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            env[f"BERT4REC_{name.upper()}"] = str(value)
        return env

    @field_validator(*ZERO_IS_OFF, mode="before")
    @classmethod
    def _zero_is_off(cls, value: Any) -> Any:
        return None if value in (0, "0", "none", "None", "") else value

    @field_validator("allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("allowed_hosts")
    @classmethod
    def _some_host(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("allowed_hosts is empty: no request could be served (use '*' for any host)")
        return value

    @field_validator("api_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        key = value.get_secret_value().strip()
        if len(key) < MIN_API_KEY_LENGTH:
            raise ValueError(
                f"the API key must have at least {MIN_API_KEY_LENGTH} characters (got {len(key)}); make one "
                "with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return SecretStr(key)


def load_serve_settings(*, api_key_file: Path | None = None, **overrides: Any) -> ServeSettings:
    """ServeSettings from the environment with `overrides` (None = not given) on top; the API key may
    come from a file (a key on the command line would show in `ps`). Raises ConfigError, one line."""
    values = {name: value for name, value in overrides.items() if value is not None}
    if api_key_file is not None:
        try:
            values["api_key"] = api_key_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read the API key file {api_key_file}: {err}") from None
    try:
        return ServeSettings(**values)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid serve settings (options or BERT4REC_* variables): {problems}") from None
