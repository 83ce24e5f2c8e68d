"""Atomic file writes: a temporary sibling, then one rename, so a reader never sees a half-written file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path, *, mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that wants a file name (polars, matplotlib);
    renamed onto `path` when the block ends without error, deleted otherwise. `mode`: file
    permissions (default: mkstemp's owner-only 0o600)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write `data` to `path` via a temp file in the same folder, fsync and a rename: never half-written.
    `mode`: file permissions (default: mkstemp's owner-only 0o600)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """`atomic_write_bytes` of `text` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def write_json_and_markdown(folder: Path, name: str, record: object, report: str) -> tuple[Path, Path]:
    """A benchmark's `<folder>/<name>.json` (the record, indented) and `<folder>/<name>.md` (its
    table), each written atomically; returns both paths."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / f"{name}.json", folder / f"{name}.md"
    atomic_write_text(json_path, json.dumps(record, indent=2) + "\n")
    atomic_write_text(md_path, report)
    return json_path, md_path
