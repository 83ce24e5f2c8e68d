"""Model bundle: everything inference needs, no pickle, written atomically, checked on load.

A bundle folder (the path given to `save_bundle` / `load_bundle`) holds versions and a pointer:
    CURRENT             the name of the live version folder, replaced in one atomic rename
    v-<time>-<random>/  one complete bundle (below); a save writes a new one, then moves CURRENT
Bundles written before versioning (the files below directly in the folder) still load.

Files of one version:
    manifest.json       format version, sha256 and size of every other file
    config.json         the ExperimentConfig the model was trained with
    model.safetensors   Transformer weights
    vocab.json          external item / user ids in index order
    data.safetensors    users' known sequences (CSR: items, offsets) and training popularity
    items.parquet       item metadata (title, genres, ...), if the data had any
    metrics.json        evaluation results of the run
    run.json            seed, versions, data fingerprint and statistics, training seconds
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from pydantic import ValidationError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from bert4rec.config import ExperimentConfig
from bert4rec.data.sequences import SequenceSplit
from bert4rec.data.vocab import Vocab
from bert4rec.errors import ArtifactError
from bert4rec.models import TRANSFORMERS, build_transformer
from bert4rec.models.transformer import SequenceTransformer
from bert4rec.resources import check_memory, config_parameters_lower_bound

FORMAT_VERSION = 1
REQUIRED = ("config.json", "model.safetensors", "vocab.json", "data.safetensors")
OPTIONAL = ("items.parquet", "metrics.json", "run.json")
POINTER = "CURRENT"
VERSION_PREFIX = "v-"
_VERSION_NAME = re.compile(r"v-[A-Za-z0-9_-]{1,100}")
# small JSON files are read whole before anything else is known: a hard cap keeps a tampered one cheap
MAX_MANIFEST_BYTES = 1 << 20
MAX_CONFIG_BYTES = 1 << 20


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


def _save_step(step: str) -> None:
    """Called after each step of `save_bundle`; a no-op that fault-injection tests replace to kill
    the save there (tests/test_artifacts_safety.py)."""


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
    """Write a new version folder inside `path`, then point `path/CURRENT` at it in one rename.

    Until that rename every reader sees the previous bundle whole; after it, the new one. A crash
    at any point leaves one of the two loadable (a half-written version folder is ignored and
    removed by the next save). Older versions and the files of a pre-versioning bundle are removed
    after the switch. One writer per folder at a time.
    """
    path = Path(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    version = Path(tempfile.mkdtemp(prefix=f"{VERSION_PREFIX}{stamp}-", dir=path))
    pointer_tmp = path / f".{POINTER}.{version.name}"
    try:
        _save_step("version folder")
        _write_json(version / "config.json", config.model_dump(mode="json"))
        _save_step("config.json")
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(version / "model.safetensors"))
        _save_step("model.safetensors")
        _write_json(version / "vocab.json", split.vocab.to_dict())
        _save_step("vocab.json")
        seqs = full_sequences(split)
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        save_file(
            {
                "items": torch.from_numpy(np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)),
                "offsets": torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)),
                "popularity": torch.from_numpy(split.item_popularity()),
            },
            str(version / "data.safetensors"),
        )
        _save_step("data.safetensors")
        if items is not None:
            items.write_parquet(version / "items.parquet")
            _save_step("items.parquet")
        _write_json(version / "metrics.json", metrics)
        _write_json(version / "run.json", run)
        _save_step("metrics.json")
        files = sorted(p.name for p in version.iterdir())
        manifest = {
            "format_version": FORMAT_VERSION,
            "model_type": config.model_type,
            "n_items": split.n_items,
            "n_users": split.vocab.n_users,
            "display_col": display_col,
            "files": {name: _sha256(version / name) for name in files},
            "sizes": {name: (version / name).stat().st_size for name in files},
        }
        _write_json(version / "manifest.json", manifest)
        _save_step("manifest.json")
        _fsync_tree(version)
        _save_step("fsync")
        pointer_tmp.write_text(version.name + "\n")
        _fsync_file(pointer_tmp)
        _save_step("pointer written")
        os.replace(pointer_tmp, path / POINTER)  # the switch: atomic on POSIX and Windows
        _fsync_dir(path)
    except BaseException:
        pointer_tmp.unlink(missing_ok=True)
        shutil.rmtree(version, ignore_errors=True)
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise
    _save_step("switched")
    _remove_stale(path, keep=version.name)
    _save_step("cleaned")
    return path


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open folders; its renames are durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for p in folder.iterdir():
        _fsync_file(p)
    _fsync_dir(folder)


def _remove_stale(path: Path, keep: str) -> None:
    """After a switch: delete the other version folders (older or half-written), pointer temp
    files and the top-level files of a pre-versioning bundle (manifest first, so that a crash in
    between leaves nothing that looks like a bundle of its own)."""
    for entry in path.iterdir():
        if entry.name == keep or entry.is_symlink():
            continue
        if entry.is_dir() and _VERSION_NAME.fullmatch(entry.name):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_file() and entry.name.startswith(f".{POINTER}."):
            entry.unlink(missing_ok=True)
    for name in ("manifest.json", *REQUIRED, *OPTIONAL):
        old = path / name
        if old.is_file() and not old.is_symlink():
            old.unlink(missing_ok=True)


def bundle_version(path: Path) -> Path:
    """The folder holding the live bundle files: `path/<CURRENT>` or, for a bundle written before
    versioning, `path` itself. Raises ArtifactError when `path` is not a bundle."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(
            f"model artifact not found: {path} is not a folder (train one with `bert4rec train`)"
        )
    pointer = path / POINTER
    if pointer.is_symlink() or pointer.exists():
        raw = _read_regular(pointer, 256, f"{path}/{POINTER}")
        name = raw.decode("utf-8", "replace").strip()
        if not _VERSION_NAME.fullmatch(name):
            raise ArtifactError(
                f"{path}/{POINTER} does not name a version folder (v-...); the bundle was tampered with"
            )
        version = path / name
        if version.is_symlink() or not version.is_dir():
            raise ArtifactError(f"{path}/{POINTER} names {name}, which is not a folder inside {path}")
        return version
    if not (path / "manifest.json").exists() and not (path / "manifest.json").is_symlink():
        raise ArtifactError(f"{path}: manifest.json is missing; this is not a bert4rec model folder")
    return path


def _read_regular(path: Path, max_bytes: int, what: str, expected: int | None = None) -> bytes:
    """A regular file's bytes, checked before reading: not a symlink, FIFO or device, at most
    `max_bytes` (and exactly `expected` bytes when given). Never blocks on a special file."""
    flags = (
        os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    )
    try:
        if path.is_symlink():
            raise ArtifactError(f"{what} is a symbolic link; a bundle holds only regular files")
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ArtifactError(f"{what} is missing") from None
    except OSError as err:
        raise ArtifactError(f"{what} cannot be opened ({err.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ArtifactError(f"{what} is not a regular file; a bundle holds only regular files")
        if expected is not None and st.st_size != expected:
            raise ArtifactError(
                f"{what} has {st.st_size} bytes but the manifest says {expected}; "
                "it is corrupted or was modified"
            )
        if st.st_size > max_bytes:
            raise ArtifactError(f"{what} is {st.st_size} bytes, more than the {max_bytes} allowed")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes or (expected is not None and len(data) != expected):
        raise ArtifactError(f"{what} changed while it was read")
    return data


def _json(data: bytes, what: str, kind: type) -> Any:
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        where = f" at line {err.lineno} column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
        raise ArtifactError(f"{what} is corrupted: not valid JSON{where}") from None
    if not isinstance(value, kind):
        raise ArtifactError(
            f"{what} is corrupted: expected a JSON {'object' if kind is dict else 'array'}, "
            f"got {type(value).__name__}"
        )
    return value


def _checked_manifest(folder: Path) -> dict[str, Any]:
    """manifest.json, with every field the loader relies on type-checked."""
    manifest = _json(
        _read_regular(folder / "manifest.json", MAX_MANIFEST_BYTES, f"{folder}/manifest.json"),
        f"{folder}/manifest.json",
        dict,
    )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        shown = (
            version if isinstance(version, int) and not isinstance(version, bool) else type(version).__name__
        )
        raise ArtifactError(
            f"{folder}: artifact format {shown!r} is not supported "
            f"(this version reads {FORMAT_VERSION}); retrain or use a matching bert4rec version"
        )
    files, sizes = manifest.get("files"), manifest.get("sizes", {})
    if not isinstance(files, dict) or not all(
        isinstance(d, str) and re.fullmatch(r"[0-9a-f]{64}", d) for d in files.values()
    ):
        raise ArtifactError(
            f"{folder}/manifest.json is corrupted: 'files' must map file names to sha256 digests"
        )
    if not isinstance(sizes, dict) or not all(type(v) is int and v >= 0 for v in sizes.values()):
        raise ArtifactError(
            f"{folder}/manifest.json is corrupted: 'sizes' must map file names to byte counts"
        )
    for name in files:
        if name not in (*REQUIRED, *OPTIONAL):
            shown = name if re.fullmatch(r"[\w.-]{1,64}", name) and ".." not in name else "an unexpected name"
            raise ArtifactError(
                f"{folder}/manifest.json lists {shown!r}, which is not a bundle file; "
                f"a bundle holds only {', '.join((*REQUIRED, *OPTIONAL))}"
            )
    for key in ("n_items", "n_users"):
        if type(manifest.get(key)) is not int or manifest[key] < 0:
            raise ArtifactError(
                f"{folder}/manifest.json is corrupted: {key!r} must be a non-negative integer"
            )
    if manifest.get("model_type") not in TRANSFORMERS:
        raise ArtifactError(
            f"{folder}/manifest.json: model_type must be one of {sorted(TRANSFORMERS)} "
            "(only Transformer models are saved as bundles)"
        )
    if manifest.get("display_col") is not None and not isinstance(manifest.get("display_col"), str):
        raise ArtifactError(f"{folder}/manifest.json is corrupted: 'display_col' must be a string or null")
    return manifest


def _read_files(folder: Path, manifest: dict[str, Any]) -> dict[str, bytes]:
    """Every file of the manifest: confined to `folder` (plain names only), regular, of the listed
    size, within the memory available, and matching its sha256."""
    files: dict[str, str] = manifest["files"]
    sizes: dict[str, int] = manifest.get("sizes", {})
    for name in REQUIRED:
        if name not in files:
            raise ArtifactError(f"{folder}: required file {name} is missing from the manifest")
    actual: dict[str, int] = {}
    for name in files:
        st = (folder / name).lstat() if (folder / name).is_symlink() or (folder / name).exists() else None
        if st is None:
            raise ArtifactError(f"{folder}: file {name} listed in the manifest is missing")
        if not stat.S_ISREG(st.st_mode):
            raise ArtifactError(f"{folder}/{name} is not a regular file; a bundle holds only regular files")
        if name in sizes and st.st_size != sizes[name]:
            raise ArtifactError(
                f"{folder}/{name} has {st.st_size} bytes but the manifest says {sizes[name]}; "
                "it is corrupted or was modified"
            )
        actual[name] = st.st_size
    check_memory(
        sum(actual.values()),
        f"loading the bundle {folder}",
        what="its files",
        advice="load it on a machine with more memory",
        error=ArtifactError,
    )
    out: dict[str, bytes] = {}
    for name, digest in files.items():
        limit = MAX_CONFIG_BYTES if name == "config.json" else max(actual[name], 0)
        data = _read_regular(folder / name, limit, f"{folder}/{name}", expected=sizes.get(name))
        if hashlib.sha256(data).hexdigest() != digest:
            raise ArtifactError(
                f"{folder}/{name} is corrupted or was modified (sha256 does not match the manifest)"
            )
        out[name] = data
    return out


def _checked_config(data: bytes, folder: Path, manifest: dict[str, Any]) -> ExperimentConfig:
    raw = _json(data, f"{folder}/config.json", dict)
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        # field names and reasons only: the values come from the file
        reasons = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in err.errors()[:5]
        )
        raise ArtifactError(f"{folder}/config.json is not a valid configuration ({reasons})") from None
    if config.model_type != manifest["model_type"]:
        raise ArtifactError(
            f"{folder}: config.json says model_type {config.model_type!r} but the manifest says "
            f"{manifest['model_type']!r}"
        )
    return config


def _checked_vocab(data: bytes, folder: Path, manifest: dict[str, Any]) -> Vocab:
    raw = _json(data, f"{folder}/vocab.json", dict)
    item_ids, user_ids = raw.get("item_ids"), raw.get("user_ids")
    for key, ids in (("item_ids", item_ids), ("user_ids", user_ids)):
        if not isinstance(ids, list) or not all(
            isinstance(i, (int, str)) and not isinstance(i, bool) for i in ids
        ):
            raise ArtifactError(f"{folder}/vocab.json is corrupted: {key} must be a list of ints and strings")
        if len(set(ids)) != len(ids):
            raise ArtifactError(f"{folder}/vocab.json is corrupted: {key} repeats an id")
    vocab = Vocab(list(item_ids or []), list(user_ids or []))
    if vocab.n_items != manifest["n_items"] or vocab.n_users != manifest["n_users"]:
        raise ArtifactError(
            f"{folder}: vocab.json has {vocab.n_items} items / {vocab.n_users} users but the manifest says "
            f"{manifest['n_items']} / {manifest['n_users']}"
        )
    return vocab


def _safetensors(data: bytes, what: str) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors(data)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types on a bad header
        raise ArtifactError(f"{what} is not a valid safetensors file ({type(err).__name__})") from None


def _checked_model(data: bytes, folder: Path, config: ExperimentConfig, vocab: Vocab) -> SequenceTransformer:
    """The model, built only once the weights' names and shapes match what config.json describes
    (checked on the meta device: an absurd max_len or hidden_size allocates nothing) and every
    weight is finite."""
    what = f"{folder}/model.safetensors"
    least = config_parameters_lower_bound(config, vocab.n_items)
    if least * 2 > len(data):  # no float type we save is smaller than 2 bytes
        raise ArtifactError(
            f"{what} does not match config.json: the config describes at least {least:,} parameters, "
            f"more than the {len(data):,}-byte weights file can hold"
        )
    weights = _safetensors(data, what)
    try:
        with torch.device("meta"):
            skeleton = build_transformer(config.model_type, config.model, vocab.n_items, vocab.n_users)
    except (RuntimeError, ValueError, OverflowError) as err:
        raise ArtifactError(f"{what}: config.json describes a model that cannot be built ({err})") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if expected != found:
        missing = sorted(expected.keys() - found.keys())
        bad = missing or sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
        detail = f"missing {bad[:3]}" if missing else f"shape of {bad[:3]}" if bad else "unexpected tensors"
        raise ArtifactError(f"{what} does not match config.json ({detail})")
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ArtifactError(
                f"{what}: weight {name} holds NaN or infinite values; the model cannot score (retrain it)"
            )
    model = build_transformer(config.model_type, config.model, vocab.n_items, vocab.n_users)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ArtifactError(f"{what} does not match config.json ({str(err).splitlines()[0][:200]})") from None
    return model.eval()


def _checked_sequences(data: bytes, folder: Path, vocab: Vocab) -> tuple[list[np.ndarray], np.ndarray]:
    """Users' stored sequences (every index a real item, 1..n_items) and the popularity counts."""
    what = f"{folder}/data.safetensors"
    tensors = _safetensors(data, what)
    for key in ("items", "offsets", "popularity"):
        t = tensors.get(key)
        if t is None or t.dim() != 1 or t.dtype != torch.int64:
            raise ArtifactError(f"{what} is corrupted: {key!r} must be a 1-d int64 tensor")
    flat, offsets, popularity = (tensors[k].numpy() for k in ("items", "offsets", "popularity"))
    if (
        len(offsets) != vocab.n_users + 1
        or offsets[0] != 0
        or offsets[-1] != len(flat)
        or np.any(np.diff(offsets) < 0)
    ):
        raise ArtifactError(f"{what} is inconsistent with vocab.json (user offsets)")
    if len(flat) and (flat.min() < 1 or flat.max() > vocab.n_items):
        raise ArtifactError(
            f"{what} is inconsistent with vocab.json: stored sequences hold item indices "
            f"outside 1..{vocab.n_items}"
        )
    if popularity.shape != (vocab.n_items + 1,) or (len(popularity) and popularity.min() < 0):
        raise ArtifactError(
            f"{what} popularity has shape {popularity.shape}, expected ({vocab.n_items + 1},) "
            "non-negative counts"
        )
    return [flat[offsets[u] : offsets[u + 1]] for u in range(vocab.n_users)], popularity


def _checked_items(data: bytes | None, folder: Path, display_col: str | None) -> pl.DataFrame | None:
    if data is None:
        return None
    try:
        items = pl.read_parquet(io.BytesIO(data))
    except Exception as err:  # noqa: BLE001 - polars/arrow raise many types on a broken file
        raise ArtifactError(
            f"{folder}/items.parquet cannot be read as Parquet ({type(err).__name__})"
        ) from None
    if "item_id" not in items.columns:
        raise ArtifactError(f"{folder}/items.parquet has no item_id column")
    if display_col is not None and display_col not in items.columns:
        raise ArtifactError(f"{folder}: the manifest's display_col is not a column of items.parquet")
    return items


def load_bundle(path: Path) -> Bundle:
    """Load and validate a bundle as untrusted input; any missing, corrupted, tampered or
    inconsistent file raises ArtifactError with one line that never quotes the file's contents."""
    path = Path(path)
    folder = bundle_version(path)
    manifest = _checked_manifest(folder)
    data = _read_files(folder, manifest)
    config = _checked_config(data["config.json"], folder, manifest)
    vocab = _checked_vocab(data["vocab.json"], folder, manifest)
    sequences, popularity = _checked_sequences(data["data.safetensors"], folder, vocab)
    model = _checked_model(data.pop("model.safetensors"), folder, config, vocab)
    metrics = _json(data["metrics.json"], f"{folder}/metrics.json", dict) if "metrics.json" in data else {}
    run = _json(data["run.json"], f"{folder}/run.json", dict) if "run.json" in data else {}
    items = _checked_items(data.get("items.parquet"), folder, manifest.get("display_col"))
    return Bundle(
        config,
        model,
        vocab,
        sequences,
        popularity,
        items,
        manifest.get("display_col"),
        metrics,
        run,
        manifest=manifest,
        path=folder,
    )
