"""What a server holds for one model bundle, and how it changes while it serves.

The catalogue (`bert4rec.inference.catalog.ItemCatalog`: trained items, items added after
training, retired items) and everything derived from it (the model extended by the added items,
the scorer, the item and intent indexes, the text index) form one immutable `ServedState`. Items
can be added (a content-fused bundle only) and retired without retraining: an update builds the
next state, saves the catalogue beside the bundle, then swaps one reference under a lock; a query
reads the reference once, so it never sees half of an update. Other processes' updates (another
`serve --workers` worker, `bert4rec items add`) are picked up by `refresh_catalog`, under the
catalogue's inter-process lock.

`ServedModel` owns that state, the catalogue updates, text cold start and the model's facts; the
`Recommender` (`inference.recommender`) adds the four query types on top.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bert4rec.artifacts import Bundle, load_bundle
from bert4rec.data.kinds import sequence_kind
from bert4rec.data.vocab import Vocab
from bert4rec.errors import (
    ArtifactError,
    CatalogConflictError,
    CatalogError,
    ConfigError,
    ContentUnavailableError,
    QueryError,
)
from bert4rec.evaluation.scoring import TransformerScorer
from bert4rec.inference.catalog import (
    AddedItem,
    CatalogStore,
    ItemCatalog,
    NewItem,
    calibrated_biases,
    extend_model,
    hidden_sample,
    new_item_bias,
)
from bert4rec.inference.content import CONTENT_FILE, ContentIndex
from bert4rec.inference.index import DEFAULT_THRESHOLD, VectorIndex, build_index
from bert4rec.inference.intents import IntentEncoder
from bert4rec.inference.onnx_backend import OnnxScorer
from bert4rec.models.transformer import SequenceTransformer
from bert4rec.text import TextEncoder, item_texts

if TYPE_CHECKING:
    from typing import Self  # Python 3.11+; annotations only, so 3.10 runs this module too


@dataclass(frozen=True)
class ServedState:
    """One consistent version of what queries read: the catalogue, the model extended by its added
    items, the scorer over that model, the item-vector index (item_to_item, cosine), the intent
    encoder and its index (the model path, inner product with the bias folded in) and (when
    enabled) the text index."""

    catalog: ItemCatalog
    model: SequenceTransformer
    scorer: TransformerScorer | OnnxScorer
    item_index: VectorIndex
    intents: IntentEncoder
    model_index: VectorIndex
    content: ContentIndex | None


class ServedModel:
    """One model bundle as a server holds it: the current `ServedState`, catalogue updates (add,
    retire, refresh from other processes), text cold start and the model's facts."""

    def __init__(
        self,
        bundle: Bundle,
        backend: str = "torch",
        threads: int = 1,
        *,
        catalog: bool = True,
        new_item_exposure: float | None = None,
        index: str = "auto",
        index_threshold: int = DEFAULT_THRESHOLD,
        qdrant: Mapping[str, Any] | None = None,
    ) -> None:
        """`backend="onnx"` scores with an in-memory ONNX Runtime export (`threads` intra-op threads;
        needs the onnx extra); the default "torch" runs the model eagerly. `catalog=True` loads the
        newest catalogue version saved beside the bundle (items added or retired after training);
        `new_item_exposure` overrides the bundle's `model.new_item_exposure`.

        `index` searches the item vectors `exact`ly, with faiss `hnsw`, or `auto` (HNSW above
        `index_threshold` items); see `inference.index`. `index="qdrant"` keeps the
        item vectors in Qdrant: `qdrant` holds the `inference.qdrant_index.QdrantOptions` fields (a
        server's url, or a local folder's path, the collection, ...)."""
        if backend not in ("torch", "onnx"):
            raise ConfigError(f"unknown backend {backend!r}: use 'torch' or 'onnx'")
        self.bundle = bundle
        self.backend = backend
        self.threads = threads
        self.index_kind = index
        self.index_threshold = index_threshold
        self.qdrant = dict(qdrant or {})
        self.max_len = bundle.config.model.max_len
        self.new_item_exposure = (
            bundle.config.model.new_item_exposure if new_item_exposure is None else new_item_exposure
        )
        self.new_item_calibration: str = bundle.config.model.new_item_calibration
        self.encoder: TextEncoder | None = None
        self._content_cache: Path | None = None
        self._text_enabled = False
        self._write_lock = threading.Lock()  # one catalogue update at a time
        self._hidden: torch.Tensor | None = None  # users' hidden states that new items are calibrated on
        self.store = CatalogStore(bundle.path, self.fingerprint) if bundle.path is not None else None
        base = self._stored_catalog() if catalog else None
        if base is None:
            base = ItemCatalog(bundle.vocab, bundle.items, bundle.display_col, bundle.popularity)
        # built eagerly: a lazy cache would race between the API's worker threads
        self._state = self._build_state(base)

    @classmethod
    def load(cls, path: Path | str, backend: str = "torch", threads: int = 1, **kwargs: Any) -> Self:
        """Load a model bundle folder (validated; raises ArtifactError with the reason) and its
        saved catalogue."""
        return cls(load_bundle(Path(path)), backend=backend, threads=threads, **kwargs)

    def _stored_catalog(self) -> ItemCatalog | None:
        """The newest catalogue version saved beside the bundle (None: none saved). Raises
        ArtifactError naming the file when it does not fit this model."""
        bundle = self.bundle
        stored = self.store.load() if self.store is not None else None
        if stored is None:
            return None
        version, added, retired = stored
        assert self.store is not None
        where = self.store.path(version)
        dim = bundle.config.model.content_dim
        if any(a.vector.shape != (dim,) for a in added) or (added and bundle.model.content is None):
            raise ArtifactError(f"{where}: its text vectors do not fit this model ({dim}-wide, fused)")
        try:
            return ItemCatalog(
                bundle.vocab,
                bundle.items,
                bundle.display_col,
                bundle.popularity,
                added=added,
                retired=retired,
                version=version,
            )
        except Exception as err:  # noqa: BLE001 - a stored file is untrusted: any mismatch is named
            raise ArtifactError(f"{where}: does not fit the model ({type(err).__name__}: {err})") from None

    def refresh_catalog(self) -> bool:
        """Serve the newest catalogue version saved beside the bundle, if another process (another
        `serve --workers` worker, `bert4rec items add`) saved a newer one than this process serves.
        Returns whether the served version changed. Cheap when nothing changed (one directory
        listing). Raises ArtifactError for a newer file that does not fit the model (nothing changes)."""
        if self.store is None or self.store.newest() <= self._state.catalog.version:
            return False
        with self._write_lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> bool:
        """`refresh_catalog` for a caller that holds the write lock."""
        if self.store is None or self.store.newest() <= self._state.catalog.version:
            return False
        catalog = self._stored_catalog()
        if catalog is None or catalog.version <= self._state.catalog.version:
            return False
        self._state = self._build_state(catalog)
        return True

    @contextmanager
    def _updating(self) -> Iterator[None]:
        """Around a catalogue update: this process's write lock, then the catalogue's inter-process
        lock, then the newest saved version, so the update builds on every version saved before it."""
        with self._write_lock:
            if self.store is None:
                yield
                return
            with self.store.lock():
                self._refresh_locked()
                yield

    # ------------------------------------------------------------------ served state
    def _build_state(self, catalog: ItemCatalog) -> ServedState:
        """Everything a query reads, for one catalogue version (the bundle is never modified)."""
        model = self.bundle.model
        if catalog.n_added:
            vectors = torch.from_numpy(np.stack([a.vector for a in catalog.added]).astype(np.float32))
            model = extend_model(model, vectors, torch.zeros(catalog.n_added))
            with torch.no_grad():
                model.head_bias[catalog.n_trained + 1 :] = self._new_item_biases(model, catalog.n_trained)
        scorer: TransformerScorer | OnnxScorer
        if self.backend == "onnx":
            scorer = OnnxScorer(model, name=self.model_type, threads=self.threads)
        else:
            scorer = TransformerScorer(model, name=self.model_type)
        content = self._content_index(catalog, model) if self._text_enabled else None
        intents = IntentEncoder(model)
        kind, threshold = self.index_kind, self.index_threshold
        # a vector database holds the active items, each with its payload (metadata for its filters)
        where: dict[str, Any] = {}
        if kind == "qdrant":
            where = {"qdrant": self.qdrant, "payload": catalog.payload, "active": catalog.active}
            where |= {"version": catalog.version, "lineage": self.fingerprint}
        with torch.inference_mode():
            item_index = build_index(model.item_weights(), kind, threshold, "cosine", **where)
        model_index = build_index(intents.item_vectors(), kind, threshold, "ip", **where)
        return ServedState(catalog, model, scorer, item_index, intents, model_index, content)

    def _new_item_biases(self, model: SequenceTransformer, n_trained: int) -> torch.Tensor:
        """Output biases of the added items (model.new_item_calibration / new_item_exposure)."""
        n_added = model.n_items - n_trained
        if self.new_item_calibration == "bias":
            return torch.full((n_added,), new_item_bias(model, n_trained, self.new_item_exposure))
        if self._hidden is None:  # the same users every time: computed once
            self._hidden = hidden_sample(self.bundle.model, self.bundle.sequences, self.max_len)
        return calibrated_biases(model, n_trained, self.new_item_exposure, self._hidden)

    def _content_index(self, catalog: ItemCatalog, model: SequenceTransformer) -> ContentIndex | None:
        """Text vectors of every item for free-text queries: a fused model's own (stored in the bundle,
        added items included), else every trained item's text embedded now (cached beside the bundle)."""
        assert self.encoder is not None
        if model.content is not None:
            return ContentIndex(self.encoder, model.content.vectors[: catalog.n_items + 1], from_cache=True)
        texts = item_texts(self.bundle.items, self.bundle.vocab, self.bundle.display_col)
        return ContentIndex.build(texts, self.encoder, self._content_cache)

    @property
    def state(self) -> ServedState:
        """The current version (read it once per query)."""
        return self._state

    @property
    def catalog(self) -> ItemCatalog:
        return self._state.catalog

    @property
    def vocab(self) -> Vocab:
        """Item ids (trained + added, in index order) and the trained users."""
        return self._state.catalog.vocab

    @property
    def scorer(self) -> TransformerScorer | OnnxScorer:
        return self._state.scorer

    @property
    def item_index(self) -> VectorIndex:
        return self._state.item_index

    @property
    def model_index(self) -> VectorIndex:
        return self._state.model_index

    @property
    def intents(self) -> IntentEncoder:
        return self._state.intents

    @property
    def content(self) -> ContentIndex | None:
        """The text index of text cold start (None until `enable_content()`)."""
        return self._state.content

    @property
    def has_text_vectors(self) -> bool:
        """Whether the bundle stores item text vectors (trained with content fusion): such a bundle
        serves text queries and takes new items."""
        return self.bundle.model.content is not None

    # ------------------------------------------------------------------ model facts
    @property
    def model_type(self) -> str:
        return self.bundle.config.model_type

    @property
    def max_history(self) -> int:
        """History items the model sees; older ones are cut (BERT4Rec keeps one slot for [MASK])."""
        return sequence_kind(self.model_type).max_history(self.max_len)

    @property
    def filter_fields(self) -> list[str]:
        """Item metadata fields usable in `filters`."""
        return self._state.catalog.filter.fields

    @property
    def display_col(self) -> str | None:
        """The metadata column holding item titles, if any."""
        return self.bundle.display_col

    @property
    def data_fingerprint(self) -> str | None:
        """Fingerprint of the data split the model was trained on (from the bundle's run.json)."""
        value = self.bundle.run.get("data_fingerprint")
        return None if value is None else str(value)

    @property
    def fingerprint(self) -> str:
        """Short sha256 of the weights file (from the bundle manifest): identifies the served model."""
        digest = self.bundle.manifest.get("files", {}).get("model.safetensors", "")
        return str(digest)[:16] or "unknown"

    def history(self, user_id: Any) -> list[Any]:
        """The user's known items (external ids), oldest first. Raises UnknownIdError."""
        vocab = self.vocab
        return vocab.decode_items(self.bundle.sequences[vocab.user_idx(user_id)])

    def item_info(self, item_id: Any) -> dict[str, Any]:
        """`{"item_id": ..., **metadata}` for a trained or added item. Raises UnknownIdError."""
        catalog = self._state.catalog
        idx = catalog.vocab.item_idx(item_id)
        return {"item_id": catalog.vocab.item_ids[idx - 1], **catalog.meta.get(idx, {})}

    def title(self, item_id: Any) -> str | None:
        """The display title of an item (None without metadata). Raises UnknownIdError."""
        return self._state.catalog.title(item_id)

    def search_items(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Items (trained or added, not retired) whose title or id contains `query`
        (case-insensitive), for pickers: the item with exactly that id first, then titles starting
        with it, then the others, each group by training popularity. An empty query lists the most
        popular items. Returns `[{"item_id", "title", "metadata"}]` (metadata without the title)."""
        if limit < 1:
            raise QueryError(f"limit must be a positive integer, got {limit!r}")
        return self._state.catalog.search(query, limit)

    def item_summary(self, item_id: Any) -> dict[str, Any]:
        """`{"item_id", "title", "metadata"}` of an item (metadata without the title column).
        Raises UnknownIdError."""
        catalog = self._state.catalog
        return catalog.payload(catalog.vocab.item_idx(item_id))

    # ------------------------------------------------------------------ text
    def enable_content(self, encoder: TextEncoder | None = None, cache: Path | bool = True) -> ContentIndex:
        """Load the text encoder for free-text queries (`item_to_item` with `item_text`) and new items.

        A content-fused bundle already stores every item's text vector; otherwise each trained item's
        text (title + metadata) is embedded now and stored beside the bundle as `content.safetensors`
        (`cache=True`), at a given path, or kept in memory only (`cache=False`); a matching stored
        file is reused. The default encoder is MiniLM (needs the `serve` extra; raises
        ContentUnavailableError naming it otherwise).
        """
        with self._write_lock:
            self._load_encoder(encoder)
            if cache is True:
                self._content_cache = (
                    self.bundle.path / CONTENT_FILE if self.bundle.path is not None else None
                )
            else:
                self._content_cache = Path(cache) if cache else None
            self._text_enabled = True
            # same catalogue, same model: only the text index is new (the item and intent indexes,
            # an HNSW build of minutes at a million items, are kept)
            state = self._state
            self._state = replace(state, content=self._content_index(state.catalog, state.model))
        assert self._state.content is not None
        return self._state.content

    def _load_encoder(self, encoder: TextEncoder | None = None) -> TextEncoder:
        if encoder is not None:
            self.encoder = encoder
        elif self.encoder is None:
            from bert4rec.text import MiniLMEncoder

            self.encoder = MiniLMEncoder().load()
        return self.encoder

    # ------------------------------------------------------------------ catalogue updates
    def catalog_info(self) -> dict[str, Any]:
        """Version and counts of the served catalogue (version, trained, added, retired, active)."""
        return self._state.catalog.info()

    def add_items(self, items: Sequence[NewItem]) -> dict[str, Any]:
        """Add items after training (or update items added before), without retraining: each item's
        vector is its text (title + metadata + description) through the trained content fusion.

        From then on they can be recommended by every query type and used as query items, and
        filters see their metadata. The new catalogue version is saved beside the bundle before it
        is served. Returns `catalog_info()`. Raises CatalogConflictError (a trained item's id, a
        bundle without text vectors), CatalogError (malformed item: nothing changed),
        CatalogWriteError (could not save: nothing changed) or ContentUnavailableError (no encoder).
        """
        if not self.has_text_vectors:
            raise CatalogConflictError(
                "this model has no item text vectors (it was trained without content fusion), so new "
                "items cannot be placed from their text; retrain with item metadata (data.metadata_cols)",
                "model",
            )
        if not items:
            raise CatalogError("no items to add", "items")
        self.refresh_catalog()  # what other processes saved, so the checks below see it
        for item in items:  # malformed input fails before any lock or file is touched
            self._state.catalog.prepare_new(item)
        with self._updating():
            current = self._state.catalog
            prepared = [current.prepare_new(item) for item in items]
            ids = [p[0] for p in prepared]
            if len(set(ids)) != len(ids):
                raise CatalogError("the same item id is given twice", "item_id")
            encoder = self._load_encoder()
            vectors = np.asarray(encoder.encode([p[3] for p in prepared]), dtype=np.float32)
            expected = self.bundle.config.model.content_dim
            if vectors.ndim != 2 or vectors.shape[1] != expected:
                raise ContentUnavailableError(
                    f"the text encoder {encoder.name!r} gives vectors of shape {vectors.shape[1:]}, but the "
                    f"model was trained on {expected}-wide text vectors"
                )
            added = [
                AddedItem(item_id, text, metadata, embedded, vectors[j])
                for j, (item_id, text, metadata, embedded) in enumerate(prepared)
            ]
            return self._commit(current.with_updates(added=added))

    def add_item(
        self, item_id: Any, text: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """`add_items` for one item."""
        return self.add_items([NewItem(item_id, text, dict(metadata or {}))])

    def retire_items(self, item_ids: Sequence[Any]) -> dict[str, Any]:
        """Never recommend these items again (trained or added; histories that hold them still read).
        Saved beside the bundle like `add_items`. Raises UnknownIdError for an unknown or already
        retired id (nothing changed)."""
        if not item_ids:
            raise CatalogError("no items to retire", "items")
        self.refresh_catalog()  # what other processes saved, so the checks below see it
        for item_id in item_ids:  # unknown ids fail before any lock or file is touched
            self._state.catalog.check_retire(item_id)
        with self._updating():
            current = self._state.catalog
            ids = [current.check_retire(item_id) for item_id in item_ids]
            return self._commit(current.with_updates(retired=ids))

    def _commit(self, catalog: ItemCatalog) -> dict[str, Any]:
        """Build the state of `catalog`, save the catalogue, then serve it (caller holds the lock)."""
        state = self._build_state(catalog)
        if self.store is not None:
            self.store.save(catalog, self.encoder.name if self.encoder is not None else "")
        self._state = state  # one reference swap: queries see the old or the new version, never a mix
        return catalog.info()

    def set_new_item_exposure(self, exposure: float, calibration: str | None = None) -> None:
        """Serve added items at another exposure (0..1) and, optionally, calibration ("score" or
        "bias"); see `model.new_item_exposure` and `model.new_item_calibration`."""
        if not 0.0 <= exposure <= 1.0:
            raise ConfigError(f"new_item_exposure must be between 0 and 1, got {exposure}")
        if calibration not in (None, "score", "bias"):
            raise ConfigError(f"new_item_calibration must be 'score' or 'bias', got {calibration!r}")
        with self._write_lock:
            self.new_item_exposure = exposure
            self.new_item_calibration = calibration or self.new_item_calibration
            self._state = self._build_state(self._state.catalog)
