"""Export every item's vector (with its id and metadata) for retrieval outside the server.

One Parquet row per trained item, in item-index order:
    item_id      the id as in the training data
    vector       (D + 1,) float32: output item vector with the output bias appended (`IntentEncoder`)
    popularity   training interactions (what unknown users are ranked by)
    <metadata>   the item metadata columns of the bundle (title, genres, ...), null when absent

The inner product of an intent vector (`"return_vector": true` on POST /recommend) with `vector` is
the model's score, so `top_k(vectors @ q)` over the rows that pass the same filters, minus the items
in the history, is the server's list (tests/inference/test_vectors.py checks this).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from bert4rec.artifacts import Bundle, load_bundle
from bert4rec.errors import ArtifactError
from bert4rec.inference.intents import IntentEncoder


def item_vector_frame(bundle: Bundle) -> pl.DataFrame:
    """The export as a DataFrame (see the module docstring); row j - 1 is item index j."""
    vocab = bundle.vocab
    vectors = IntentEncoder(bundle.model).item_vectors()[1:]  # drop PAD: (n_items, D + 1)
    frame = pl.DataFrame(
        {
            "item_id": vocab.item_ids,
            "vector": pl.Series(vectors, dtype=pl.Array(pl.Float32, vectors.shape[1])),
            "popularity": bundle.popularity[1:].astype(np.int64),
        }
    ).with_row_index("_idx", offset=1)
    items = bundle.items
    if items is not None and "item_id" in items.columns:
        ids = items["item_id"].to_list()
        keep = [j for j, item_id in enumerate(ids) if vocab.has_item(item_id)]
        rows = pl.Series("_idx", [vocab.item_idx(ids[j]) for j in keep], dtype=pl.UInt32)
        meta = items[keep].drop("item_id").with_columns(rows)
        clash = [c for c in meta.columns if c in ("vector", "popularity")]
        meta = meta.rename({c: f"meta_{c}" for c in clash}).unique("_idx", keep="first")
        frame = frame.join(meta, on="_idx", how="left")
    return frame.sort("_idx").drop("_idx")


def export_item_vectors(model_dir: Path | str, out: Path | str) -> tuple[Path, int, int]:
    """Write `out` (Parquet, written to a temporary sibling and renamed) from a model folder.
    Returns (path, rows, vector dimension). Raises ArtifactError for a bad bundle or output path."""
    bundle = load_bundle(Path(model_dir))
    frame = item_vector_frame(bundle)
    out = Path(out)
    if out.is_dir():
        raise ArtifactError(f"{out} is a folder; give a file name such as {out / 'items.parquet'}")
    if not out.parent.is_dir():
        raise ArtifactError(f"cannot write {out}: the folder {out.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        frame.write_parquet(tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dim = int(frame.schema["vector"].size)  # type: ignore[attr-defined]
    return out, frame.height, dim
