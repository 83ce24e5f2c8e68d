"""Export every item's vector (with its id and metadata) for retrieval outside the server.

One Parquet row per item the server can recommend: the trained items in item-index order, then the
items added after training (`bert4rec items add`, `PUT /items/{id}`); retired items are left out.
    item_id      the id as in the training data (or as added)
    vector       (D + 1,) float32: output item vector with the output bias appended (`IntentEncoder`);
                 an added item's vector is its text through the trained fusion, its bias calibrated
    popularity   training interactions (what unknown users are ranked by; 0 for added items)
    added        whether the item was added after training
    <metadata>   the item metadata columns of the bundle (title, genres, ...), null when absent

The inner product of an intent vector (`"return_vector": true` on POST /recommend) with `vector` is
the model's score, so `top_k(vectors @ q)` over the rows that pass the same filters, minus the items
in the history, is the server's list (tests/inference/test_vectors.py checks this).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from bert4rec.errors import ArtifactError
from bert4rec.inference.recommender import Recommender
from bert4rec.io import atomic_path


def item_vector_frame(rec: Recommender) -> tuple[pl.DataFrame, int]:
    """The export of what `rec` serves now (see the module docstring), and how many retired items
    were left out."""
    state = rec.state
    catalog = state.catalog
    vectors = state.intents.item_vectors()[1:]  # drop PAD: (n_items, D + 1), added items included
    n = catalog.n_items
    frame = pl.DataFrame(
        {
            "item_id": catalog.vocab.item_ids,
            "vector": pl.Series(vectors, dtype=pl.Array(pl.Float32, vectors.shape[1])),
            "popularity": catalog.popularity[1:].astype(np.int64),
            "added": np.arange(1, n + 1) > catalog.n_trained,
        }
    ).with_row_index("_idx", offset=1)
    items = catalog.items  # the trained items' metadata rows, then the added items'
    if items is not None and "item_id" in items.columns:
        ids = items["item_id"].to_list()
        keep = [j for j, item_id in enumerate(ids) if catalog.vocab.has_item(item_id)]
        rows = pl.Series("_idx", [catalog.vocab.item_idx(ids[j]) for j in keep], dtype=pl.UInt32)
        meta = items[keep].drop("item_id").with_columns(rows)
        clash = [c for c in meta.columns if c in ("vector", "popularity", "added")]
        meta = meta.rename({c: f"meta_{c}" for c in clash}).unique("_idx", keep="first")
        frame = frame.join(meta, on="_idx", how="left")
    active = pl.Series("_active", catalog.active[1:])
    frame = frame.sort("_idx").with_columns(active).filter(pl.col("_active"))
    return frame.drop("_idx", "_active"), catalog.n_retired


def export_item_vectors(model_dir: Path | str, out: Path | str) -> tuple[Path, int, int, int]:
    """Write `out` (Parquet, written to a temporary sibling and renamed) from a model folder and its
    saved catalogue. Returns (path, rows, vector dimension, retired items left out). Raises
    ArtifactError for a bad bundle or output path."""
    out = Path(out)
    if out.is_dir():
        raise ArtifactError(f"{out} is a folder; give a file name such as {out / 'items.parquet'}")
    if not out.parent.is_dir():
        raise ArtifactError(f"cannot write {out}: the folder {out.parent} does not exist")
    frame, retired = item_vector_frame(Recommender.load(Path(model_dir)))
    with atomic_path(out) as tmp:
        frame.write_parquet(tmp)
    dim = int(frame.schema["vector"].size)  # type: ignore[attr-defined]
    return out, frame.height, dim, retired
