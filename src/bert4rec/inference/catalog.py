"""The item catalogue: which items exist, what they are called, and what changed since training.

An `ItemCatalog` is one immutable version of the catalogue: the trained items (indices
1..n_trained, as in the bundle), the items added after training (indices n_trained + 1 ..,
in the order they were first added), the retired items (kept as indices so that histories holding
them still read, but never recommended), their metadata, titles, search arrays and filters.
An update builds a new version (`with_updates`) and never changes an existing one, so a reader
that took a version keeps a consistent view while a writer prepares the next.

An added item has no ID embedding: its item vector is its text vector (MiniLM of title, metadata
and description) through the trained content-fusion projection (`extend_model`), and its output
bias is a quantile of the trained items' biases (`model.new_item_exposure`).

`CatalogStore` keeps the versions beside the bundle in `catalog/catalog-<version>.safetensors`
(the added items' text vectors as a tensor, their ids, texts and metadata and the retired ids in
the header). Each version is written into a temporary file and renamed into place, so a crash at
any point leaves the previous version the newest complete file; on load the newest version wins.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from filelock import FileLock, Timeout
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors
from torch import nn

from bert4rec.data.kinds import sequence_kind
from bert4rec.data.vocab import Vocab, canonical_int
from bert4rec.errors import (
    ArtifactError,
    CatalogConflictError,
    CatalogError,
    CatalogWriteError,
    UnknownIdError,
)
from bert4rec.inference.filters import MetadataFilter
from bert4rec.io import atomic_write_bytes
from bert4rec.models.transformer import SequenceTransformer
from bert4rec.text import metadata_text

log = logging.getLogger(__name__)

CATALOG_DIR = "catalog"
CATALOG_FORMAT = "1"
MAX_TEXT_CHARS = 2000  # a description; MiniLM reads 256 word pieces anyway
MAX_ID_CHARS = 256
KEEP_VERSIONS = 10  # older catalogue files are deleted after a successful write
LOCK_FILE = ".lock"  # inter-process: one update at a time across the processes serving a bundle
LOCK_TIMEOUT_S = 30.0
_FILE = re.compile(r"^catalog-(\d{6,})\.safetensors$")


@dataclass(frozen=True)
class NewItem:
    """An item to add (or to update, if it was added before): its id, an optional free-text
    description and metadata fields of the bundle's item table (e.g. title, genres)."""

    item_id: Any
    text: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AddedItem:
    """An item added after training, as stored: what it was given and the text vector it got."""

    item_id: Any
    text: str | None  # the free-text description given, if any
    metadata: dict[str, Any]
    embedded_text: str  # title + metadata + description, the text that was embedded
    vector: np.ndarray  # (C,) float32 text vector (MiniLM)


# --------------------------------------------------------------------------------------------- model


@torch.no_grad()
def extend_model(
    model: SequenceTransformer, text_vectors: torch.Tensor, bias: torch.Tensor
) -> SequenceTransformer:
    """A copy of a content-fused model with m items appended after its n items: item index n + j
    (j = 1..m) has no ID embedding (zero row), text vector `text_vectors[j - 1]` and output bias
    `bias[j - 1]`; MASK moves to n + m + 1. The input model is not changed.

    (m, C) text vectors, (m,) biases. Raises CatalogConflictError for a model without content fusion
    or with an untied output head (whose output vectors have no text part to score new items by).
    """
    if model.content is None:
        raise CatalogConflictError(
            "this model has no item text vectors (it was trained without content fusion), so a new "
            "item cannot be placed from its text; retrain with item metadata (data.metadata_cols)",
            "model",
        )
    if model.head is not None:
        raise CatalogConflictError(
            "this model's output head is untied (model.tie_weights=false): its output vectors have no "
            "text part to score new items by; retrain with model.tie_weights=true",
            "model",
        )
    n, m = model.n_items, int(text_vectors.shape[0])
    out = copy.deepcopy(model)
    if m == 0:
        return out
    old = model.item_emb.weight
    emb = nn.Embedding(n + m + 2, old.shape[1], padding_idx=0)
    emb.weight.zero_()
    emb.weight[: n + 1] = old[: n + 1]
    emb.weight[n + m + 1] = old[n + 1]  # MASK
    out.item_emb = emb.to(old.device)
    out.head_bias = nn.Parameter(torch.cat([model.head_bias.detach(), bias.to(model.head_bias)]))
    assert out.content is not None
    vectors = model.content.vectors
    out.content.vectors = torch.cat([vectors[: n + 1], text_vectors.to(vectors), vectors[n + 1 :]])
    out.n_items = n + m
    return out.eval()


@torch.no_grad()
def reset_items(model: SequenceTransformer, item_idx: torch.Tensor) -> None:
    """Treat trained items as if added after training (cold-start evaluation), in place: their ID
    vectors (input, and output when untied) become zero and their output bias the mean bias of the
    other items.

    A fused model then scores them from their text alone; an ID-only model scores them all alike.
    Needed because items without training interactions still sit in the training softmax as
    never-positive items, which pushes their scores down, text part included (see the cold-start
    oracle in tests/models/test_content_fusion.py).
    """
    idx = torch.as_tensor(item_idx, dtype=torch.int64, device=model.head_bias.device).reshape(-1)
    if len(idx) and (int(idx.min()) < 1 or int(idx.max()) > model.n_items):
        raise ValueError(f"item indices must be in 1..{model.n_items}")
    others = torch.ones(model.n_items + 1, dtype=torch.bool, device=idx.device)
    others[0] = False
    others[idx] = False
    model.item_emb.weight[idx] = 0.0
    if model.head is not None:
        model.head.weight[idx] = 0.0
    if others.any():
        model.head_bias[idx] = model.head_bias[others].mean()


def new_item_bias(model: SequenceTransformer, n_trained: int, exposure: float) -> float:
    """The output bias of a new item: the `exposure` quantile (0..1) of the trained items' biases."""
    if not 0.0 <= exposure <= 1.0:
        raise ValueError(f"new_item_exposure must be between 0 and 1, got {exposure}")
    trained = model.head_bias.detach().float()[1 : n_trained + 1]
    return float(torch.quantile(trained, exposure)) if len(trained) else 0.0


@torch.no_grad()
def calibrated_biases(
    model: SequenceTransformer, n_trained: int, exposure: float, hidden: torch.Tensor
) -> torch.Tensor:
    """(m,) output biases for the m items after `n_trained` in `model` that give each new item, on
    average over the sample of users' hidden states `hidden` (U, D), the score of the `exposure`
    quantile (0..1) of the trained items' average scores. Unlike a bias quantile this accounts for
    how strongly the text part alone scores: a text vector that every user matches does not flood
    every list. Each new item keeps its spread over users (who matches it better than whom)."""
    if not 0.0 <= exposure <= 1.0:
        raise ValueError(f"new_item_exposure must be between 0 and 1, got {exposure}")
    weights = model.item_weights().detach().float()  # (n_items + 1, D)
    mean_hidden = hidden.float().mean(dim=0)  # the mean of a linear score is the score of the mean
    raw = weights @ mean_hidden  # (n_items + 1,)
    trained = raw[1 : n_trained + 1] + model.head_bias.detach().float()[1 : n_trained + 1]
    target = torch.quantile(trained, exposure) if len(trained) else torch.tensor(0.0)
    return target - raw[n_trained + 1 :]


@torch.no_grad()
def hidden_sample(
    model: SequenceTransformer, histories: Sequence[np.ndarray], max_len: int, n: int = 512
) -> torch.Tensor:
    """(U, D) the model's output hidden states for up to `n` evenly spaced non-empty histories (the
    users' stored ones): the reference crowd `calibrated_biases` scores new items against."""
    nonempty = [h for h in histories if len(h)]
    if not nonempty:
        return torch.zeros(1, model.cfg.hidden_size)
    picked = [nonempty[int(i)] for i in np.linspace(0, len(nonempty) - 1, min(n, len(nonempty)))]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        kind = sequence_kind(model.model_type)
        seq = kind.inference_batch(picked, max_len, model.n_items).to(device)
        return kind.read(model(seq)).float().cpu()
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------- catalogue


def _metadata_schema(items: pl.DataFrame | None) -> dict[str, pl.DataType]:
    if items is None or "item_id" not in items.columns:
        return {}
    return {name: dtype for name, dtype in items.schema.items() if name != "item_id"}


def _check_value(name: str, dtype: pl.DataType, value: Any) -> Any:
    """The value if it fits the column's type (None always fits), else CatalogError naming the field."""
    if value is None:
        return None

    def wrong(expected: str) -> CatalogError:
        return CatalogError(
            f"metadata field {name!r} expects {expected}, got {value!r} ({type(value).__name__})",
            f"metadata.{name}",
        )

    if dtype == pl.Boolean:
        if not isinstance(value, bool):
            raise wrong("a boolean")
        return value
    if dtype.is_integer():
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if dtype.is_numeric():
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise wrong("a number")
        return float(value)
    if isinstance(dtype, pl.List):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of strings")
        if sum(len(v) for v in value) > MAX_TEXT_CHARS:
            raise CatalogError(
                f"metadata field {name!r} is longer than {MAX_TEXT_CHARS} characters", f"metadata.{name}"
            )
        return list(value)
    if not isinstance(value, str):
        raise wrong("a string")
    if len(value) > MAX_TEXT_CHARS:
        raise CatalogError(
            f"metadata field {name!r} is longer than {MAX_TEXT_CHARS} characters", f"metadata.{name}"
        )
    return value


class ItemCatalog:
    """One immutable version of the item catalogue (see the module docstring). Item indices: 1..n_trained
    are the trained items, n_trained + 1 .. n_items the added ones; PAD = 0."""

    def __init__(
        self,
        vocab: Vocab,
        items: pl.DataFrame | None,
        display_col: str | None,
        popularity: np.ndarray,
        *,
        added: Sequence[AddedItem] = (),
        retired: Iterable[Any] = (),
        version: int = 0,
    ) -> None:
        """`vocab`, `items` and `popularity` are the bundle's (trained items only); `added` and
        `retired` (item ids) the changes since training. Raises CatalogError for an inconsistent set."""
        self.trained_vocab = vocab
        self.trained_items = items  # the bundle's table, kept for the next version
        self.n_trained = vocab.n_items
        self.display_col = display_col
        self.version = version
        self.added: tuple[AddedItem, ...] = tuple(added)
        self.schema = _metadata_schema(items)
        # an extended Vocab sharing the user index (rebuilding it per update would cost O(users))
        self.vocab = copy.copy(vocab)
        self.vocab.item_ids = list(vocab.item_ids) + [a.item_id for a in self.added]
        self.vocab._item_index = {item_id: i + 1 for i, item_id in enumerate(self.vocab.item_ids)}
        if len(self.vocab._item_index) != self.vocab.n_items:
            raise CatalogError("added item ids repeat or reuse trained ids", "item_id")
        n = self.vocab.n_items
        self.items = self._items_frame(items)
        self.retired = np.zeros(n + 1, dtype=bool)
        for item_id in retired:
            self.retired[self.vocab.item_idx(item_id)] = True
        self.active = ~self.retired  # (n_items + 1,) True = may be recommended
        self.active[0] = False
        self.popularity = np.concatenate([popularity, np.zeros(len(self.added), dtype=popularity.dtype)])
        self.meta: dict[int, dict[str, Any]] = {}
        if self.items is not None:
            for row in self.items.to_dicts():
                item_id = row.pop("item_id")
                if self.vocab.has_item(item_id):
                    self.meta[self.vocab.item_idx(item_id)] = row
        self.filter = MetadataFilter(self.items, self.vocab)
        titles = [self._title(i) or "" for i in range(1, n + 1)]
        self._search_titles = np.array([t.lower() for t in titles], dtype=str)
        self._search_ids = np.array([str(i).lower() for i in self.vocab.item_ids], dtype=str)

    def _items_frame(self, items: pl.DataFrame | None) -> pl.DataFrame | None:
        """The bundle's metadata rows of the trained items, then one row per added item."""
        if items is None or "item_id" not in items.columns:
            return items
        trained = items.filter(pl.col("item_id").is_in(list(self.trained_vocab.item_ids)))
        if not self.added:
            return trained
        rows = [{"item_id": a.item_id, **{c: a.metadata.get(c) for c in self.schema}} for a in self.added]
        return pl.concat([trained, pl.DataFrame(rows, schema=items.schema)], how="vertical")

    # ------------------------------------------------------------------ facts
    @property
    def n_items(self) -> int:
        """Trained + added items (retired ones included: their indices stay)."""
        return self.vocab.n_items

    @property
    def n_added(self) -> int:
        return len(self.added)

    @property
    def n_retired(self) -> int:
        return int(self.retired.sum())

    def info(self) -> dict[str, Any]:
        """Version and counts: `{"version", "trained", "added", "retired", "active"}`."""
        return {
            "version": self.version,
            "trained": self.n_trained,
            "added": self.n_added,
            "retired": self.n_retired,
            "active": int(self.active.sum()),
        }

    def is_added(self, idx: int) -> bool:
        return idx > self.n_trained

    def _title(self, idx: int) -> str | None:
        col = self.display_col
        value = self.meta.get(idx, {}).get(col) if col else None
        return None if value is None else str(value)

    def title(self, item_id: Any) -> str | None:
        """The display title of an item (None without one). Raises UnknownIdError."""
        return self._title(self.vocab.item_idx(item_id))

    def payload(self, idx: int) -> dict[str, Any]:
        """`{"item_id", "title", "metadata"}` of item index `idx` (metadata without the title column)."""
        meta = dict(self.meta.get(idx, {}))
        title = meta.pop(self.display_col, None) if self.display_col else None
        return {
            "item_id": self.vocab.item_ids[idx - 1],
            "title": None if title is None else str(title),
            "metadata": meta,
        }

    def search(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Active items whose title or id contains `query` (case-insensitive): the item with exactly that
        id first, then titles starting with it, then the others, each group by training popularity
        (added items have none). An empty query lists the most popular items."""
        q = query.strip().lower()
        pop = self.popularity[1:]
        if q:
            tier = np.full(len(pop), 3, dtype=np.int64)
            tier[np.char.find(self._search_ids, q) >= 0] = 2
            tier[np.char.find(self._search_titles, q) >= 0] = 2
            tier[np.char.startswith(self._search_titles, q)] = 1
            tier[self._search_ids == q] = 0
        else:
            tier = np.zeros(len(pop), dtype=np.int64)
        tier[self.retired[1:]] = 3
        order = np.lexsort((np.arange(len(pop)), -pop, tier))  # by tier, then popularity, then index
        order = order[tier[order] < 3][:limit]
        return [self.payload(int(i) + 1) for i in order]

    # ------------------------------------------------------------------ updates
    def _canonical_id(self, item_id: Any) -> Any:
        """A new item's id in the type of the trained ids (ints stay ints: "42" -> 42). A text becomes
        an integer id only in canonical decimal form, as in `Vocab` lookups: "4_2", " 42", "+42"
        are refused, so two different texts never name the same item."""
        if isinstance(item_id, bool) or not isinstance(item_id, int | str):
            raise CatalogError(f"item id must be a string or an integer, got {item_id!r}", "item_id")
        if isinstance(item_id, str):
            stripped = item_id.strip()
            if not stripped or len(stripped) > MAX_ID_CHARS:
                raise CatalogError(f"item id must have 1..{MAX_ID_CHARS} characters", "item_id")
        if self.trained_vocab.item_ids and all(isinstance(i, int) for i in self.trained_vocab.item_ids[:100]):
            number = item_id if isinstance(item_id, int) else canonical_int(item_id)
            if number is None:
                raise CatalogError(
                    f"item id {item_id!r} is not an integer in canonical decimal form, and this "
                    "catalogue's ids are integers",
                    "item_id",
                )
            return number
        return item_id.strip() if isinstance(item_id, str) else str(item_id)

    def prepare_new(self, item: NewItem) -> tuple[Any, str | None, dict[str, Any], str]:
        """Check one item to add; returns (canonical id, description, metadata, text to embed).
        Raises CatalogConflictError for a trained item's id, CatalogError for anything malformed."""
        item_id = self._canonical_id(item.item_id)
        idx = self.vocab._coerce(item_id, self.vocab._item_index)
        if idx is not None and idx <= self.n_trained:
            raise CatalogConflictError(
                f"item {item_id!r} is a trained item: its vector comes from training and cannot be "
                "replaced; retire it (DELETE) and add the new version under a new id",
                "item_id",
            )
        text = item.text
        if text is not None:
            if not isinstance(text, str):
                raise CatalogError(f"text must be a string, got {type(text).__name__}", "text")
            if not text.strip():
                raise CatalogError(
                    "text is empty; give a description, or leave it out and give metadata", "text"
                )
            if len(text) > MAX_TEXT_CHARS:
                raise CatalogError(f"text has {len(text)} characters; at most {MAX_TEXT_CHARS}", "text")
            text = text.strip()
        if not isinstance(item.metadata, Mapping):
            raise CatalogError("metadata must be an object of field: value", "metadata")
        metadata: dict[str, Any] = {}
        for name, value in item.metadata.items():
            if name not in self.schema:
                valid = ", ".join(self.schema) or "none (this model has no item metadata)"
                raise CatalogError(f"unknown metadata field {name!r}; fields: {valid}", f"metadata.{name}")
            metadata[name] = _check_value(name, self.schema[name], value)
        embedded = metadata_text({c: metadata.get(c) for c in self.schema}, self.display_col, text)
        if not embedded:
            raise CatalogError(
                f"item {item_id!r} has no text: give a text (description) or a title / metadata", "text"
            )
        return item_id, text, metadata, embedded

    def with_updates(self, added: Sequence[AddedItem] = (), retired: Iterable[Any] = ()) -> ItemCatalog:
        """The next version: `added` items appended (or, for an id added before, replaced in place and
        un-retired) and `retired` ids retired. This version is not changed."""
        position = {a.item_id: j for j, a in enumerate(self.added)}
        merged = list(self.added)
        retired_ids = {self.vocab.item_ids[i - 1] for i in np.flatnonzero(self.retired)}
        for item in added:
            if item.item_id in position:
                merged[position[item.item_id]] = item
            else:
                position[item.item_id] = len(merged)
                merged.append(item)
            retired_ids.discard(item.item_id)
        for item_id in retired:
            retired_ids.add(self.vocab.item_ids[self.vocab.item_idx(item_id) - 1])
        return ItemCatalog(
            self.trained_vocab,
            self.trained_items,
            self.display_col,
            self.popularity[: self.n_trained + 1],
            added=merged,
            retired=retired_ids,
            version=self.version + 1,
        )

    def check_retire(self, item_id: Any) -> Any:
        """The id of an active item to retire. Raises UnknownIdError for an unknown or retired one."""
        idx = self.vocab.item_idx(item_id)
        if self.retired[idx]:
            raise UnknownIdError(f"item {item_id!r} is already retired")
        return self.vocab.item_ids[idx - 1]


# --------------------------------------------------------------------------------------------- storage


class CatalogStore:
    """Catalogue versions beside a bundle: `<bundle>/catalog/catalog-<version>.safetensors`."""

    def __init__(self, bundle_path: Path, model_fingerprint: str) -> None:
        self.folder = Path(bundle_path) / CATALOG_DIR
        self.model_fingerprint = model_fingerprint

    def versions(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        found = (_FILE.match(p.name) for p in self.folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def path(self, version: int) -> Path:
        return self.folder / f"catalog-{version:06d}.safetensors"

    def newest(self) -> int:
        """The newest saved version (0: none): one directory listing, cheap enough to poll."""
        versions = self.versions()
        return versions[-1] if versions else 0

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the inter-process lock on this catalogue: every process serving the bundle (`serve
        --workers`, `bert4rec items add` beside a running server) takes it around
        read-newest-then-save, so no update is written on top of a version it has not seen. Raises
        CatalogWriteError when the folder cannot be created (a read-only bundle cannot take updates)
        or another process holds the lock past LOCK_TIMEOUT_S."""
        try:
            self.folder.mkdir(exist_ok=True)
        except OSError as err:
            raise CatalogWriteError(
                f"cannot write the catalogue folder {self.folder} ({err}); nothing changed"
            ) from err
        try:
            held = FileLock(self.folder / LOCK_FILE, timeout=LOCK_TIMEOUT_S).acquire()
        except Timeout:
            raise CatalogWriteError(
                f"another process has held the catalogue lock {self.folder} for too long; nothing changed"
            ) from None
        with held:
            yield

    def load(self) -> tuple[int, list[AddedItem], list[Any]] | None:
        """The newest version: (version, added items, retired ids); None when there is none.
        Raises ArtifactError naming the file when it is unreadable or belongs to another model."""
        versions = self.versions()
        if not versions:
            return None
        path = self.path(versions[-1])
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                vectors = f.get_tensor("vectors").float().numpy()
            if meta.get("format") != CATALOG_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {CATALOG_FORMAT}")
            version = int(meta["version"])
            rows = json.loads(meta["items"])
            retired = json.loads(meta["retired"])
            if not isinstance(rows, list) or not isinstance(retired, list):
                raise ValueError("items and retired must be lists")
            if vectors.ndim != 2 or vectors.shape[0] != len(rows):
                raise ValueError(f"{len(rows)} items but vectors of shape {vectors.shape}")
            added = [
                AddedItem(
                    r["item_id"], r.get("text"), dict(r["metadata"]), str(r["embedded_text"]), vectors[j]
                )
                for j, r in enumerate(rows)
            ]
        except (OSError, SafetensorError, ValueError, KeyError, TypeError) as err:
            raise ArtifactError(
                f"{path}: unreadable catalogue file ({type(err).__name__}: {err}); remove it to serve the "
                "previous version"
            ) from None
        if meta.get("model") != self.model_fingerprint:
            raise ArtifactError(
                f"{path} was written for another model (weights {meta.get('model')}, served "
                f"{self.model_fingerprint}); remove the {self.folder} folder after retraining"
            )
        if version != versions[-1]:
            raise ArtifactError(f"{path} says it is version {version}")
        return version, added, retired

    def save(self, catalog: ItemCatalog, encoder: str) -> Path:
        """Write `catalog` as its version: into a temporary file, flushed, then renamed into place.
        Raises CatalogWriteError (the previous version stays the newest)."""
        path = self.path(catalog.version)
        rows = [
            {"item_id": a.item_id, "text": a.text, "metadata": a.metadata, "embedded_text": a.embedded_text}
            for a in catalog.added
        ]
        dim = int(catalog.added[0].vector.shape[0]) if catalog.added else 0
        vectors = (
            torch.from_numpy(np.stack([a.vector for a in catalog.added]).astype(np.float32))
            if catalog.added
            else torch.zeros(0, dim)
        )
        retired = [catalog.vocab.item_ids[i - 1] for i in np.flatnonzero(catalog.retired)]
        meta = {
            "format": CATALOG_FORMAT,
            "version": str(catalog.version),
            "model": self.model_fingerprint,
            "encoder": encoder,
            "items": json.dumps(rows, default=str),
            "retired": json.dumps(retired, default=str),
        }
        try:
            self.folder.mkdir(exist_ok=True)
            if path.exists():
                raise CatalogWriteError(f"{path} exists already: another process updates this catalogue")
            atomic_write_bytes(path, save_safetensors({"vectors": vectors.contiguous()}, metadata=meta))
        except OSError as err:
            raise CatalogWriteError(
                f"could not save the catalogue to {path} ({err}); nothing changed"
            ) from err
        for old in self.versions()[:-KEEP_VERSIONS]:
            self.path(old).unlink(missing_ok=True)
        return path
