"""Model bundle: everything inference needs, no pickle, written atomically, checked on load.

Layout of a bundle folder:
    manifest.json       format version + sha256 of every other file
    config.json         the ExperimentConfig the model was trained with
    model.safetensors   Transformer weights
    vocab.json          external item / user ids in index order
    data.safetensors    users' known sequences (CSR: items, offsets) and training popularity
    items.parquet       item metadata (title, genres, ...), if the data had any
    metrics.json        evaluation results of the run
    run.json            seed, versions, data fingerprint and statistics
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from safetensors.torch import load_file, save_file

from bert4rec.config import ExperimentConfig
from bert4rec.data.sequences import SequenceSplit
from bert4rec.data.vocab import Vocab
from bert4rec.errors import ArtifactError
from bert4rec.models import build_transformer
from bert4rec.models.transformer import SequenceTransformer

FORMAT_VERSION = 1
REQUIRED = ("config.json", "model.safetensors", "vocab.json", "data.safetensors")


@dataclass
class Bundle:
    config: ExperimentConfig
    model: SequenceTransformer
    vocab: Vocab
    sequences: list[np.ndarray]  # per user: every known item index, oldest first (train + val + test)
    popularity: np.ndarray  # (n_items + 1,) training interaction counts
    items: pl.DataFrame | None
    display_col: str | None
    metrics: dict[str, Any]
    run: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)  # format version + sha256 of every file
    path: Path | None = None  # the folder it was loaded from


def full_sequences(split: SequenceSplit) -> list[np.ndarray]:
    """Each user's whole known sequence: training part + validation item + test item."""
    out = []
    for u, train in enumerate(split.train):
        tail = [t for t in (split.val_target[u], split.test_target[u]) if t]
        out.append(np.concatenate([train, np.asarray(tail, dtype=np.int64)]) if tail else train)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str))


def save_bundle(
    path: Path,
    *,
    config: ExperimentConfig,
    model: SequenceTransformer,
    split: SequenceSplit,
    items: pl.DataFrame | None,
    display_col: str | None,
    metrics: dict[str, Any],
    run: dict[str, Any],
) -> Path:
    """Write a bundle into a temporary sibling folder, then move it into place in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        _write_json(tmp / "config.json", config.model_dump(mode="json"))
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        _write_json(tmp / "vocab.json", split.vocab.to_dict())
        seqs = full_sequences(split)
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        save_file(
            {
                "items": torch.from_numpy(np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)),
                "offsets": torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)),
                "popularity": torch.from_numpy(split.item_popularity()),
            },
            str(tmp / "data.safetensors"),
        )
        if items is not None:
            items.write_parquet(tmp / "items.parquet")
        _write_json(tmp / "metrics.json", metrics)
        _write_json(tmp / "run.json", run)
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {
            "format_version": FORMAT_VERSION,
            "model_type": config.model_type,
            "n_items": split.n_items,
            "n_users": split.vocab.n_users,
            "display_col": display_col,
            "files": {name: _sha256(tmp / name) for name in files},
        }
        _write_json(tmp / "manifest.json", manifest)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_bundle(path: Path) -> Bundle:
    """Load and validate a bundle; any missing, corrupted or inconsistent file raises ArtifactError."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(
            f"model artifact not found: {path} is not a folder (train one with `bert4rec train`)"
        )
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except FileNotFoundError:
        raise ArtifactError(
            f"{path}: manifest.json is missing; this is not a bert4rec model folder"
        ) from None
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{path}/manifest.json is corrupted: {err}") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: artifact format {manifest.get('format_version')!r} is not supported "
            f"(this version reads {FORMAT_VERSION}); retrain or use a matching bert4rec version"
        )
    files: dict[str, str] = manifest.get("files", {})
    for name in REQUIRED:
        if name not in files or not (path / name).exists():
            raise ArtifactError(f"{path}: required file {name} is missing")
    for name, digest in files.items():
        if not (path / name).exists():
            raise ArtifactError(f"{path}: file {name} listed in the manifest is missing")
        if _sha256(path / name) != digest:
            raise ArtifactError(
                f"{path}/{name} is corrupted or was modified (sha256 does not match the manifest)"
            )

    try:
        config = ExperimentConfig.model_validate(json.loads((path / "config.json").read_text()))
        vocab = Vocab.from_dict(json.loads((path / "vocab.json").read_text()))
        data = load_file(str(path / "data.safetensors"))
        weights = load_file(str(path / "model.safetensors"))
        metrics = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").exists() else {}
        run = json.loads((path / "run.json").read_text()) if (path / "run.json").exists() else {}
        items = pl.read_parquet(path / "items.parquet") if (path / "items.parquet").exists() else None
    except Exception as err:  # noqa: BLE001 - any parse failure means a broken bundle
        raise ArtifactError(f"{path}: could not read the artifact ({type(err).__name__}: {err})") from err

    if vocab.n_items != manifest.get("n_items") or vocab.n_users != manifest.get("n_users"):
        raise ArtifactError(
            f"{path}: vocab.json has {vocab.n_items} items / {vocab.n_users} users but the manifest says "
            f"{manifest.get('n_items')} / {manifest.get('n_users')}"
        )
    model = build_transformer(config.model_type, config.model, vocab.n_items, vocab.n_users)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ArtifactError(f"{path}/model.safetensors does not match config.json: {err}") from None
    offsets = data["offsets"].numpy()
    flat = data["items"].numpy()
    if len(offsets) != vocab.n_users + 1 or (len(flat) and flat.max() > vocab.n_items):
        raise ArtifactError(f"{path}/data.safetensors is inconsistent with vocab.json")
    sequences = [flat[offsets[u] : offsets[u + 1]] for u in range(vocab.n_users)]
    popularity = data["popularity"].numpy()
    if popularity.shape != (vocab.n_items + 1,):
        raise ArtifactError(
            f"{path}/data.safetensors popularity has shape {popularity.shape}, "
            f"expected ({vocab.n_items + 1},)"
        )
    return Bundle(
        config,
        model.eval(),
        vocab,
        sequences,
        popularity,
        items,
        manifest.get("display_col"),
        metrics,
        run,
        manifest=manifest,
        path=path,
    )
