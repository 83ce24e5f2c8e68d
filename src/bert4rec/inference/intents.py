"""Intent vectors: a history's next-item query as one vector, for vector-database retrieval.

The model scores item j after a history as `h . w_j + b_j` (h: the last position's hidden state,
w_j: the output item vector, b_j: the output bias). Folding the bias into the item vectors,

    intent vector  q   = [h, 1]          (D + 1,)
    item vector    v_j = [w_j, b_j]      (D + 1,)

makes `q . v_j` exactly the model's score: a maximum-inner-product search over the `v_j` (faiss, a
vector database, or numpy) ranks like the model. `bert4rec export-vectors` writes the `v_j`; the API
returns `q` with `"return_vector": true`.

`UserIntents` computes q once for every stored user history at load (the histories do not change
while serving), so `user_to_item` is one search instead of a model call.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from bert4rec.data.kinds import sequence_kind
from bert4rec.models.transformer import SequenceTransformer

log = logging.getLogger(__name__)

INTENTS_FILE = "intents.safetensors"


class IntentEncoder:
    """Histories -> intent vectors (B, D + 1); `item_vectors()` -> (n_items + 1, D + 1) with the bias."""

    def __init__(self, model: SequenceTransformer, chunk_size: int = 64) -> None:
        self.model = model
        self.chunk_size = chunk_size
        self.kind = sequence_kind(model.model_type)  # its inference input, as TransformerScorer's

    @property
    def dim(self) -> int:
        """D + 1."""
        return int(self.model.cfg.hidden_size) + 1

    def item_vectors(self) -> np.ndarray:
        """(n_items + 1, D + 1) float32: output item vectors with the output bias as the last column
        (row 0 is PAD)."""
        with torch.inference_mode():
            w = self.model.item_weights().detach().float().cpu()
            b = self.model.head_bias.detach().float().cpu()[:, None]
            return torch.cat([w, b], dim=1).numpy().copy()

    def encode(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        """(B,) user indices (-1 = none) and B non-empty histories of item indices -> (B, D + 1) float32.
        Histories are cut to the model's window like `TransformerScorer.score`."""
        model = self.model
        out = np.ones((len(histories), self.dim), dtype=np.float32)
        user_t = torch.as_tensor(np.asarray(users), dtype=torch.int64)
        chunks = self.kind.inference_chunks(histories, model.cfg.max_len, model.n_items, self.chunk_size)
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for idx, seq in chunks:
                    hidden = self.kind.read(model(seq, user_t[torch.from_numpy(idx)]))  # (b, D)
                    out[idx, :-1] = hidden.float().numpy()
        finally:
            model.train(was_training)
        return out

    def encode_one(self, user: int, history: np.ndarray) -> np.ndarray:
        """(D + 1,) intent vector of one history (`user` -1 = a guest session)."""
        return self.encode(np.array([user]), [history])[0]


def _trim_heap() -> None:
    """Hand the encoding's freed activations back to the OS. glibc keeps them otherwise: a server
    process stayed 175 MiB larger after encoding ML-1M's users at max_len 200 (502 -> 327 MiB RSS)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _fingerprint(weights_digest: str, sequences: Sequence[np.ndarray]) -> str:
    h = hashlib.sha256(weights_digest.encode())
    for s in sequences:
        h.update(np.asarray(s, dtype=np.int64).tobytes())
        h.update(b"\0")
    return h.hexdigest()


class UserIntents:
    """(n_users, D + 1) intent vectors of every stored user history, computed once at load.

    With `cache` (a path, usually `intents.safetensors` beside the bundle) the matrix is reused when
    it was computed from the same weights and histories, else recomputed and written atomically, so
    `serve --workers N` pays the encoding once (a read-only folder only logs a warning).
    """

    def __init__(self, vectors: np.ndarray, from_cache: bool = False) -> None:
        self.vectors = vectors
        self.from_cache = from_cache

    @classmethod
    def compute(
        cls,
        encoder: IntentEncoder,
        sequences: Sequence[np.ndarray],
        weights_digest: str = "",
        cache: Path | None = None,
    ) -> UserIntents:
        """Encode every non-empty history (row u = user index u; empty histories get a zero row)."""
        fingerprint = _fingerprint(weights_digest, sequences) if cache is not None else ""
        if cache is not None and cache.exists():
            cached = _read(cache, fingerprint, (len(sequences), encoder.dim))
            if cached is not None:
                return cls(cached, from_cache=True)
        vectors = np.zeros((len(sequences), encoder.dim), dtype=np.float32)
        users = np.array([u for u, s in enumerate(sequences) if len(s)], dtype=np.int64)
        if len(users):
            vectors[users] = encoder.encode(users, [sequences[u] for u in users])
            _trim_heap()
        if cache is not None:
            try:
                _write(cache, vectors, fingerprint)
            except OSError as err:
                log.warning("could not write %s (%s); user intents kept in memory only", cache, err)
        return cls(vectors)

    def __getitem__(self, user: int) -> np.ndarray:
        return self.vectors[user]


def _read(path: Path, fingerprint: str, shape: tuple[int, int]) -> np.ndarray | None:
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        if meta.get("fingerprint") != fingerprint:
            log.info("%s is stale (weights or histories changed); recomputing", path)
            return None
        vectors = load_file(str(path))["vectors"]
    except (OSError, SafetensorError, KeyError) as err:
        log.warning("%s is unreadable (%s); recomputing", path, err)
        return None
    if vectors.shape != shape or vectors.dtype != np.float32 or not np.isfinite(vectors).all():
        log.warning("%s has shape %s, expected %s; recomputing", path, vectors.shape, shape)
        return None
    return vectors


def _write(path: Path, vectors: np.ndarray, fingerprint: str) -> None:
    """Into a temporary sibling, then rename: a reader (another worker) never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({"vectors": np.ascontiguousarray(vectors)}, tmp, metadata={"fingerprint": fingerprint})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
