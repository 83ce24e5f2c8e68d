"""Item search in Qdrant, a vector database that shards, replicates and filters across machines.

`QdrantIndex` answers `search(query, k, exclude, mask)` with the contract of `ExactIndex` and
`HnswIndex` (`bert4rec.inference.index`): at most `k` item indices, best first, never PAD, never an
index in `exclude`, only items where `mask` is True, and the scores are the model's (inner product
for the model path, cosine for item_to_item). The same class, through the official `qdrant-client`,
talks to a Qdrant server or cluster (`url`) or runs qdrant-client's local mode (`path`, a folder, or
":memory:"), which is what the tests and benchmarks use: same client calls, an in-process engine.

The collection (one per metric: `<collection>-ip` for the model path, `<collection>-cosine` for
item_to_item) holds one point per item: id = item index (1..n_items; PAD and retired items are not
stored), vector = the row the exact index scores (normalised for cosine; searched with Qdrant's DOT
distance, so a zero vector scores 0 as in `ExactIndex`), payload = `item_id`, `title`, `metadata`
(the item's metadata, for other clients and payload filters) and `h`, a 63-bit hash of the vector.

Stale vectors are never served silently:
    * the collection's metadata holds a fingerprint of every row (metric, shape, row hashes). A
      collection whose fingerprint differs (another model, another catalogue version, an upload
      that stopped half-way: the fingerprint is written last) is synchronised (`on_mismatch=
      "rebuild"`: changed and new points upserted in batches, points of removed rows deleted) or
      refused (`on_mismatch="refuse"`, a ConfigError naming the collection); a collection without
      a fingerprint (not created by bert4rec) is never written to, nor is one that holds a later
      catalogue version of the same model (another replica got there first);
    * every answer's points carry `h`, checked against this process's vectors: a collection that
      another process rebuilt from other vectors while this one serves fails the query with
      IndexUnavailableError instead of returning stale scores.

Exclusions and masks are exact. A query that blocks at most `max_filter_ids` items sends them as a
`must_not has_id` condition, one that lets at most that many through sends them as `must has_id`
(both evaluated by Qdrant); otherwise the unfiltered ranking is read page by page and filtered here
until `k` items pass. (`max_filter_ids` defaults to 10,000 against a server and 0 in local mode,
whose has_id check copies the id list for every point: 1.4 s per query at 10,000 items and 7,500
ids, where an unfiltered page takes 12 ms.) Results are re-sorted by (score desc, index asc), as
the exact index breaks ties. Points with an index above `n_items` (added by a newer catalogue
version in the same collection) are skipped.

On a server the search is Qdrant's HNSW (`hnsw_ef` candidates) unless `exact=True`; local mode is
always exhaustive (a numpy scan, one process: it measures the client path, not a server's speed).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from bert4rec.errors import ConfigError, IndexUnavailableError
from bert4rec.inference.index import Metric, SearchResult, _allowed, _as_query, _normalise_rows

QDRANT_HINT = "the qdrant index needs qdrant-client: pip install 'bert4rec[scale]'"
DEFAULT_COLLECTION = "bert4rec"
FINGERPRINT_KEY = "bert4rec_fingerprint"
VERSION_KEY = "bert4rec_catalog_version"  # the catalogue version the points hold (Recommender)
LINEAGE_KEY = "bert4rec_model"  # the model those versions extend (its weights' fingerprint)
INCOMPLETE = "incomplete"  # the fingerprint while points are being written
TIE_MARGIN = 8  # extra results fetched so that ties at the k-th score break by index, as in ExactIndex
SCROLL_PAGE = 10_000
_H_MASK = np.uint64((1 << 63) - 1)  # payload integers are signed 64-bit

Payloads = Callable[[int], Mapping[str, Any]]


@dataclass(frozen=True)
class QdrantOptions:
    """Where the collections live and how they are searched (`serve --qdrant-*`, `BERT4REC_QDRANT_*`).

    Exactly one of `url` (a Qdrant server or cluster, e.g. http://qdrant:6333) and `path` (a folder
    for qdrant-client's local mode, or ":memory:"). `collection` is the prefix of the two collection
    names. `timeout` (s) bounds each request to a server. `exact` makes a server scan exhaustively
    instead of its HNSW graph (`hnsw_ef` candidates per query). `shards` and `replicas` are used when
    a collection is created on a cluster. `batch_size` points per upsert. `max_filter_ids`: the most
    item ids one query sends as a filter condition (more: filtered here, page by page; None = 10,000
    for a server, 0 for local mode).
    `on_mismatch`: what to do with a collection built from other vectors ("rebuild" or "refuse")."""

    url: str | None = None
    path: str | None = None
    api_key: str | None = None
    collection: str = DEFAULT_COLLECTION
    timeout: float = 10.0
    exact: bool = False
    hnsw_ef: int = 256
    shards: int | None = None
    replicas: int | None = None
    batch_size: int = 1024
    max_filter_ids: int | None = None
    on_mismatch: Literal["rebuild", "refuse"] = "rebuild"

    @classmethod
    def from_mapping(cls, options: QdrantOptions | Mapping[str, Any] | None) -> QdrantOptions:
        """Options from a mapping (None values = defaults); raises ConfigError for unknown keys or a
        missing / doubled location."""
        if isinstance(options, QdrantOptions):
            out = options
        else:
            given = {key: value for key, value in dict(options or {}).items() if value is not None}
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(given) - known)
            if unknown:
                raise ConfigError(
                    f"unknown qdrant option(s) {', '.join(unknown)}: use {', '.join(sorted(known))}"
                )
            if isinstance(given.get("path"), Path):
                given["path"] = str(given["path"])
            out = cls(**given)
        out.check()
        return out

    def check(self) -> None:
        """Raises ConfigError naming the bad setting."""
        if not self.url and not self.path:
            raise ConfigError(
                "index 'qdrant' needs a Qdrant server or a local folder: set qdrant_url (--qdrant-url, "
                "BERT4REC_QDRANT_URL, e.g. http://qdrant:6333) or qdrant_path (--qdrant-path, local mode)"
            )
        if self.url and self.path:
            raise ConfigError("give qdrant_url (a server) or qdrant_path (local mode), not both")
        if self.url and not str(self.url).startswith(("http://", "https://")):
            raise ConfigError(f"qdrant_url must start with http:// or https://, got {self.url!r}")
        if not self.collection or not all(c.isalnum() or c in "-_." for c in self.collection):
            raise ConfigError(
                f"qdrant_collection must be letters, digits, '-', '_' or '.', got {self.collection!r}"
            )
        if self.on_mismatch not in ("rebuild", "refuse"):
            raise ConfigError(f"qdrant on_mismatch must be 'rebuild' or 'refuse', got {self.on_mismatch!r}")
        for name in ("timeout", "hnsw_ef", "batch_size"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"qdrant {name} must be positive, got {getattr(self, name)!r}")
        if self.max_filter_ids is not None and self.max_filter_ids < 0:
            raise ConfigError(f"qdrant max_filter_ids must be >= 0, got {self.max_filter_ids!r}")

    @property
    def where(self) -> str:
        """The server's URL or the local folder, for messages."""
        return f"Qdrant at {self.url}" if self.url else f"Qdrant local mode at {self.path}"


class _Connection:
    """One client per server / folder and process (local mode locks its folder: a second client on
    it would be refused). Local mode is not thread-safe, so its calls are serialised here."""

    def __init__(self, client: Any, local: bool) -> None:
        self.client = client
        self.local = local
        self.lock = threading.RLock()
        self.write_lock = threading.Lock()  # one synchronisation at a time per connection

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self.client, method)
        if self.local:
            with self.lock:
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)


_connections: dict[tuple[str | None, str | None, str | None], _Connection] = {}
_connections_lock = threading.Lock()


@atexit.register
def _close_all() -> None:
    """Close the shared clients before the interpreter tears down the modules their `__del__` needs
    (local mode writes its folder on close)."""
    with _connections_lock:
        for connection in _connections.values():
            with contextlib.suppress(Exception):  # closing at exit: nothing left to report to
                connection.client.close()
        _connections.clear()


def _import_qdrant() -> Any:
    try:
        import qdrant_client
    except ImportError:
        raise ConfigError(QDRANT_HINT) from None
    return qdrant_client


def connect(options: QdrantOptions) -> _Connection:
    """The process's client for `options` (created on first use). Raises ConfigError."""
    qdrant_client = _import_qdrant()
    key = (options.url, options.path, options.api_key)
    with _connections_lock:
        found = _connections.get(key)
        if found is not None:
            return found
        try:
            if options.url:
                client = qdrant_client.QdrantClient(
                    url=options.url,
                    api_key=options.api_key,
                    timeout=max(1, math.ceil(options.timeout)),
                    # no version probe on every start: reachability is checked by the first call
                    check_compatibility=False,
                )
            else:
                location = {"location": ":memory:"} if options.path == ":memory:" else {"path": options.path}
                client = qdrant_client.QdrantClient(**location, force_disable_check_same_thread=True)
        except Exception as err:  # noqa: BLE001 - the client raises several types; one line names the cause
            raise ConfigError(f"cannot open {options.where}: {_reason(err)}") from None
        found = _Connection(client, local=not options.url)
        _connections[key] = found
        return found


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text[:300]}"


def _jsonable(value: Any) -> Any:
    """`value` as JSON payload: numpy scalars unwrapped, non-finite floats None, anything else text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    return str(value)


def row_hashes(rows: np.ndarray) -> np.ndarray:
    """(n,) int64 >= 0: a 63-bit hash of each float32 row's bits (a random linear hash mod 2^64 of
    its 32-bit words, then mixed). Equal rows hash equal; a changed row almost surely does not."""
    n, d = rows.shape
    mult = np.random.default_rng(d).integers(0, 2**63, size=d, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    out = np.empty(n, dtype=np.uint64)
    words = np.ascontiguousarray(rows, dtype=np.float32).view(np.uint32)
    for start in range(0, n, 65_536):  # bounded uint64 temporaries
        block = words[start : start + 65_536].astype(np.uint64)
        h = (block * mult).sum(axis=1, dtype=np.uint64)  # wraps mod 2^64
        h ^= h >> np.uint64(31)
        h *= np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        out[start : start + 65_536] = h
    return (out & _H_MASK).astype(np.int64)


class QdrantIndex:
    """`VectorIndex` over a Qdrant collection (see the module docstring).

    `vectors` (n_items + 1, D), row 0 PAD. `payload(idx)` gives an item's payload (`item_id`,
    `title`, `metadata`; the Recommender passes `ItemCatalog.payload`); it is read only for the
    points that are written. `active` (n_items + 1,) bool: the rows stored as points (default all
    but PAD; the Recommender leaves retired items out, so the collection holds the active
    catalogue). `version` and `lineage` (the catalogue version and the model's fingerprint) are
    stored with the fingerprint: a collection that already holds a later version of the same model
    is attached without writing (`read_only`), so replicas never set each other back. `options` is
    a `QdrantOptions` or a mapping of its fields; `client` (tests) uses that qdrant-client instead
    of the process's shared one. Raises ConfigError (bad options, a refused stale collection) or
    IndexUnavailableError (Qdrant cannot be reached)."""

    kind = "qdrant"

    def __init__(
        self,
        vectors: torch.Tensor | np.ndarray,
        metric: Metric = "cosine",
        options: QdrantOptions | Mapping[str, Any] | None = None,
        *,
        payload: Payloads | None = None,
        active: np.ndarray | None = None,
        version: int | None = None,
        lineage: str | None = None,
        client: Any = None,
        collection: str | None = None,
    ) -> None:
        if metric not in ("cosine", "ip"):
            raise ConfigError(f"unknown metric {metric!r}: use 'cosine' or 'ip'")
        if client is not None:
            given = asdict(options) if isinstance(options, QdrantOptions) else dict(options or {})
            if not given.get("url") and not given.get("path"):
                given["path"] = ":memory:"  # a placeholder for the check: `client` is used
            options = given
        self.options = QdrantOptions.from_mapping(options)
        self._models = _import_qdrant().models
        self.metric = metric
        v = torch.as_tensor(vectors).detach().float().cpu().numpy()
        v = np.ascontiguousarray(v, dtype=np.float32)
        # the rows searched, as ExactIndex holds them: normalised once for cosine (zero rows stay zero)
        self._rows = _normalise_rows(v).astype(np.float32) if metric == "cosine" else v
        self._n, self._d = self._rows.shape
        self._hashes = row_hashes(self._rows)
        self._hashes[0] = -1  # PAD is not stored, nor are retired items (their points are deleted)
        if active is not None:
            active = np.asarray(active, dtype=bool)
            if active.shape != (self._n,):
                raise ValueError(f"active has shape {active.shape}, expected ({self._n},)")
            self._hashes[~active] = -1
        digest = hashlib.sha256(f"{metric}:{self._n}:{self._d}:".encode() + self._hashes.tobytes())
        self.fingerprint = digest.hexdigest()[:32]
        self.collection = collection or f"{self.options.collection}-{metric}"
        self._payload = payload
        self.version, self.lineage = version, lineage
        self.read_only = False  # True: the collection holds a newer catalogue version, left as it is
        if client is not None:
            self._conn = _Connection(client, local=_is_local(client))
        else:
            self._conn = connect(self.options)
        self.uploaded = 0  # points written by this instance (0: the collection already held these vectors)
        self.deleted = 0
        with self._conn.write_lock:
            self._attach()

    # ------------------------------------------------------------------ facts
    @property
    def dim(self) -> int:
        return self._d

    @property
    def n_items(self) -> int:
        return self._n - 1

    def vector(self, idx: int) -> np.ndarray:
        """The stored (normalised, for cosine) vector of item index `idx` (PAD: zeros)."""
        return self._rows[idx]

    # ------------------------------------------------------------------ the collection
    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A client call; a failure to reach Qdrant is IndexUnavailableError naming the server."""
        try:
            return self._conn.call(method, *args, **kwargs)
        except (ConfigError, IndexUnavailableError):
            raise
        except Exception as err:  # noqa: BLE001 - network, HTTP and local-mode errors all end here
            raise IndexUnavailableError(
                f"{self.options.where} failed on {method} for collection {self.collection!r}: {_reason(err)}"
            ) from None

    def _stored(self) -> tuple[bool, dict[str, Any], bool]:
        """(collection exists, its metadata, its vector layout fits); raises ConfigError for a
        collection that bert4rec did not create (no fingerprint key: never overwritten)."""
        if not self._call("collection_exists", self.collection):
            return False, {}, True
        info = self._call("get_collection", self.collection)
        metadata = dict(info.config.metadata or {})
        if FINGERPRINT_KEY not in metadata:
            raise ConfigError(
                f"{self.options.where}: collection {self.collection!r} exists but was not created by "
                "bert4rec (no fingerprint in its metadata) and is left alone: choose another "
                "qdrant_collection"
            )
        params = info.config.params.vectors
        fits = getattr(params, "size", None) == self._d and getattr(params, "distance", None) == (
            self._models.Distance.DOT
        )
        return True, metadata, fits

    def _attach(self) -> None:
        exists, metadata, fits = self._stored()
        stored = str(metadata[FINGERPRINT_KEY]) if exists else None
        if exists and fits and stored == self.fingerprint:
            return
        newer = metadata.get(VERSION_KEY)
        if (
            exists
            and fits
            and self.lineage is not None
            and self.version is not None
            and metadata.get(LINEAGE_KEY) == self.lineage
            and isinstance(newer, int)
            and newer > self.version
        ):
            # another replica of this model already serves a later catalogue version: writing ours
            # would hide its added items. Its points are a superset-or-retirement of ours (queries
            # skip the items we do not know, and the hash check catches a vector that changed), and
            # this process reaches that version at its next catalogue refresh.
            self.read_only = True
            return
        if exists and self.options.on_mismatch == "refuse":
            raise ConfigError(
                f"{self.options.where}: collection {self.collection!r} holds other vectors than this model "
                f"(fingerprint {stored!r}, expected {self.fingerprint!r}); use another qdrant_collection "
                "or allow a rebuild (on_mismatch='rebuild')"
            )
        m = self._models
        if exists and not fits:  # another vector size (another model): made again
            self._call("delete_collection", self.collection)
            exists = False
        if not exists:
            extra: dict[str, Any] = {}
            if self.options.url and self.options.shards:
                extra["shard_number"] = self.options.shards
            if self.options.url and self.options.replicas:
                extra["replication_factor"] = self.options.replicas
            self._call(
                "create_collection",
                self.collection,
                vectors_config=m.VectorParams(size=self._d, distance=m.Distance.DOT),
                metadata={FINGERPRINT_KEY: INCOMPLETE, VERSION_KEY: self.version, LINEAGE_KEY: self.lineage},
                **extra,
            )
            stored_h = np.full(self._n, -2, dtype=np.int64)
            extra_ids: list[int] = []
        else:
            # written last, so a synchronisation that stops half-way is detected at the next start
            self._call("update_collection", self.collection, metadata={FINGERPRINT_KEY: INCOMPLETE})
            stored_h, extra_ids = self._scroll_hashes()
        wanted = self._hashes >= 0
        changed = np.flatnonzero(wanted & (stored_h != self._hashes))
        # points of rows that are not stored (retired items) go too
        extra_ids += np.flatnonzero(~wanted & (stored_h != -2)).tolist()
        for start in range(0, len(changed), self.options.batch_size):
            self._upsert(changed[start : start + self.options.batch_size])
        for start in range(0, len(extra_ids), self.options.batch_size):
            ids = extra_ids[start : start + self.options.batch_size]
            self._call("delete", self.collection, points_selector=m.PointIdsList(points=ids), wait=True)
        self.uploaded, self.deleted = len(changed), len(extra_ids)
        done = {FINGERPRINT_KEY: self.fingerprint, VERSION_KEY: self.version, LINEAGE_KEY: self.lineage}
        self._call("update_collection", self.collection, metadata=done)

    def _scroll_hashes(self) -> tuple[np.ndarray, list[Any]]:
        """The stored hash per row (-2 = no point) and the ids of points that are not rows 1..n."""
        stored = np.full(self._n, -2, dtype=np.int64)
        extra: list[Any] = []
        offset = None
        while True:
            records, offset = self._call(
                "scroll",
                self.collection,
                limit=SCROLL_PAGE,
                offset=offset,
                with_payload=["h"],
                with_vectors=False,
            )
            for r in records:
                h = (r.payload or {}).get("h")
                if isinstance(r.id, int) and 1 <= r.id < self._n:
                    stored[r.id] = h if isinstance(h, int) else -3
                else:
                    extra.append(r.id)
            if offset is None:
                return stored, extra

    def _upsert(self, rows: np.ndarray) -> None:
        ids = [int(i) for i in rows]
        payloads = []
        for i in ids:
            item = dict(self._payload(i)) if self._payload is not None else {}
            payloads.append({**_jsonable(item), "h": int(self._hashes[i])})
        batch = self._models.Batch(ids=ids, vectors=self._rows[rows].tolist(), payloads=payloads)
        self._call("upsert", self.collection, points=batch, wait=True)

    @property
    def max_filter_ids(self) -> int:
        """The most ids a query sends as a has_id condition (see `QdrantOptions`)."""
        if self.options.max_filter_ids is not None:
            return self.options.max_filter_ids
        return 0 if self._conn.local else 10_000

    # ------------------------------------------------------------------ search
    def search(
        self, query: np.ndarray | torch.Tensor, k: int, exclude: Any = None, mask: np.ndarray | None = None
    ) -> SearchResult:
        """The top `k` item indices by similarity to `query`; never PAD, `exclude`, or items outside
        `mask`. Raises IndexUnavailableError when Qdrant fails or the collection changed under us."""
        m = self._models
        q = _as_query(query)
        if self.metric == "cosine":
            norm = float(np.linalg.norm(q))
            q = q / norm if norm > 0 else q
        allowed = _allowed(self._n, exclude, mask)
        max_ids = self.max_filter_ids
        condition = None
        post: np.ndarray | None = None  # filter here (page by page) when the ids are too many to send
        if allowed is None:
            available = self.n_items
        else:
            allowed[0] = False
            available = int(allowed.sum())
            blocked = np.flatnonzero(~allowed[1:]) + 1
            if available == 0:
                return SearchResult(np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64))
            if len(blocked) <= max_ids:
                condition = m.Filter(must_not=[m.HasIdCondition(has_id=blocked.tolist())])
            elif available <= max_ids:
                condition = m.Filter(must=[m.HasIdCondition(has_id=np.flatnonzero(allowed).tolist())])
            else:
                post = allowed
        want = min(k, available)
        limit = k + TIE_MARGIN
        if post is not None:
            # a page holds about `limit` passing items twice over, and never more than enough for
            # every blocked item to be in it (a history: one page)
            scaled = 2 * (int(limit * self.n_items / available) + TIE_MARGIN)
            limit = min(self.n_items, limit + self.n_items - available, scaled)
        # local mode always scans exhaustively (and warns about search parameters)
        params = None
        if not self._conn.local:
            params = m.SearchParams(hnsw_ef=max(self.options.hnsw_ef, limit), exact=self.options.exact)
        ids: list[int] = []
        scores: list[float] = []
        offset = 0
        while True:
            answer = self._call(
                "query_points",
                self.collection,
                query=q.tolist(),
                query_filter=condition,
                search_params=params,
                limit=limit,
                offset=offset,
                with_payload=["h"],
                with_vectors=False,
            )
            points = answer.points
            for p in points:
                idx = p.id
                if not isinstance(idx, int) or not 1 <= idx < self._n:
                    continue  # a point of a newer catalogue version: not an item of this one
                if self._hashes[idx] < 0:
                    continue  # retired in this version, still stored by an older one
                if (p.payload or {}).get("h") != int(self._hashes[idx]):
                    raise IndexUnavailableError(
                        f"{self.options.where}: collection {self.collection!r} no longer holds the vectors "
                        f"this process serves (item index {idx} changed; another process rebuilt it from "
                        "other vectors): restart, or give each model its own qdrant_collection"
                    )
                if post is None or post[idx]:
                    ids.append(idx)
                    scores.append(float(p.score))
            if len(ids) >= want + TIE_MARGIN or len(points) < limit:
                break
            offset += limit
        idx_arr = np.asarray(ids, dtype=np.int64)
        score_arr = np.asarray(scores, dtype=np.float32)
        idx_arr, keep = np.unique(idx_arr, return_index=True)  # pages of an approximate search may overlap
        score_arr = score_arr[keep]
        order = np.lexsort((idx_arr, -score_arr))[:k]
        return SearchResult(score_arr[order], idx_arr[order])


def _is_local(client: Any) -> bool:
    """Whether a QdrantClient runs local mode (its engine is `QdrantLocal`)."""
    return type(getattr(client, "_client", None)).__name__ == "QdrantLocal"
