"""HTTP API (FastAPI): a thin layer over the Recommender facade. Needs the `serve` extra."""

from bert4rec.api.app import create_app

__all__ = ["create_app"]
