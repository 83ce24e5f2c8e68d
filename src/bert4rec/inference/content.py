"""Text cold start: MiniLM sentence embeddings of item text, for items the model never saw.

Each trained item's text (`bert4rec.text.item_texts`: its title, then its other metadata) is
embedded once with all-MiniLM-L6-v2 (`bert4rec.text.MiniLMEncoder`) and stored beside the model
bundle as `content.safetensors` (written atomically, rebuilt when the texts or the encoder change).
A free-text query is embedded the same way and ranked by cosine similarity.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from bert4rec.inference.index import ExactIndex
from bert4rec.text import TextEncoder

log = logging.getLogger(__name__)

CONTENT_FILE = "content.safetensors"


def _fingerprint(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()


def _read_cache(path: Path, encoder: str, fingerprint: str, n_items: int) -> torch.Tensor | None:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("encoder") != encoder or meta.get("texts_sha256") != fingerprint:
            log.info("%s is stale (item texts or encoder changed); rebuilding", path)
            return None
        vectors = load_file(str(path))["vectors"]
    except (OSError, SafetensorError, KeyError) as err:
        log.warning("%s is unreadable (%s); rebuilding", path, err)
        return None
    if vectors.ndim != 2 or vectors.shape[0] != n_items + 1:
        log.warning("%s has shape %s, expected (%d, D); rebuilding", path, tuple(vectors.shape), n_items + 1)
        return None
    return vectors


def _write_cache(path: Path, vectors: torch.Tensor, meta: dict[str, str]) -> None:
    """Write into a temporary sibling, then rename: a reader never sees a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({"vectors": vectors.contiguous()}, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ContentIndex:
    """Item text embeddings (n_items + 1, D) and the encoder that ranks free text against them."""

    def __init__(self, encoder: TextEncoder, vectors: torch.Tensor, from_cache: bool = False) -> None:
        self.encoder = encoder
        self.index = ExactIndex(vectors)
        self.from_cache = from_cache

    @classmethod
    def build(cls, texts: Sequence[str], encoder: TextEncoder, cache: Path | None = None) -> ContentIndex:
        """Embed `texts` (item index j at entry j - 1), reusing `cache` when it matches them and the
        encoder, else writing it (atomically; a read-only folder only logs a warning)."""
        fingerprint = _fingerprint(texts)
        if cache is not None and cache.exists():
            cached = _read_cache(cache, encoder.name, fingerprint, len(texts))
            if cached is not None:
                return cls(encoder, cached, from_cache=True)
        vectors = torch.from_numpy(np.asarray(encoder.encode(list(texts)), dtype=np.float32))
        vectors = torch.cat([torch.zeros(1, vectors.shape[1]), vectors])  # row 0 = PAD
        if cache is not None:
            meta = {"encoder": encoder.name, "texts_sha256": fingerprint, "n_items": str(len(texts))}
            try:
                _write_cache(cache, vectors, meta)
            except OSError as err:
                log.warning("could not write %s (%s); content vectors kept in memory only", cache, err)
        return cls(encoder, vectors)

    def scores(self, text: str) -> torch.Tensor:
        """(n_items + 1,) cosine similarity of `text` to every item's text."""
        query = torch.from_numpy(np.asarray(self.encoder.encode([text]), dtype=np.float32)[0])
        return self.index.scores(query)
