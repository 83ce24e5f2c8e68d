"""Server settings from the environment (`BERT4REC_MODEL`, `BERT4REC_TEXT_COLD_START`, ...)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    backend: str = Field(default="torch", description="torch or onnx (see `bert4rec serve --backend`).")
    index: str = Field(default="auto", description="Item vector search: exact, hnsw or auto.")
    index_threshold: int = Field(default=200_000, ge=1, description="Items above which auto uses hnsw.")
    intents_cache: bool = Field(
        default=False,
        description="Reuse / write the user intent vectors beside the model (intents.safetensors).",
    )
    jobs_dir: Path | None = Field(
        default=None,
        description="Folder of training jobs; enables POST /jobs and POST /model (off when None).",
    )
    max_jobs: int = Field(
        default=1, ge=1, description="Training jobs running at once; more wait in the queue."
    )
    max_queued_jobs: int = Field(default=16, ge=0, description="Queued jobs beyond those; more answer 429.")
