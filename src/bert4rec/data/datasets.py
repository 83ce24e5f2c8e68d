"""Dataset loaders: MovieLens (1M, 100K, 20M, 25M), any CSV/TSV/Parquet log, and generated demo data.

Every loader returns a `RawData` with the canonical columns `user_id`, `item_id`, `timestamp`
[, `rating`] in file order; `preprocess` (interactions.py) does the cleaning. MovieLens files are
looked for in `data.data_dir`, then `$BERT4REC_DATA_DIR`, then the cache (`$BERT4REC_CACHE_DIR` or
~/.cache/bert4rec), each either directly or in a subfolder named like the dataset (`ml-1m/`, the
archive's own folder). Only when none has them is the official GroupLens zip downloaded, once,
checked against its published MD5 and unpacked into the cache.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from http.client import HTTPException
from pathlib import Path
from urllib.request import urlopen

import polars as pl

from bert4rec.config import DataConfig
from bert4rec.data.interactions import Interactions, RawData, generate_interactions, preprocess
from bert4rec.errors import DataError

log = logging.getLogger(__name__)

MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens"  # override: $BERT4REC_MOVIELENS_URL
# MD5 of the official zips, as GroupLens publishes them in <name>.zip.md5.
CHECKSUMS = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
    "ml-20m": "cd245b17a1ae2cc31bb14903e1204af3",
    "ml-25m": "6b51fb2759a8657d3bfcbfc42b592ada",
}
_CHUNK = 1 << 20

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip


@dataclass(frozen=True)
class _MovieLensLayout:
    ratings: str  # file name inside the archive folder
    movies: str
    reader: Callable[[Path, Path | None], RawData]


# --------------------------------------------------------------------------------------------- public


def load_raw(cfg: DataConfig) -> RawData:
    """Read the interactions (and item metadata, if any) named by `cfg`, uncleaned, in file order.

    Raises `DataError` naming the file and the column or line when the input is missing or malformed.
    """
    if cfg.dataset == "generated":
        return generate_interactions(cfg.n_users, cfg.n_items, cfg.seed)
    if cfg.dataset == "file":
        return _load_file(cfg)
    layout = _LAYOUTS[cfg.dataset]
    folder = locate_movielens(cfg.dataset, cfg.data_dir)
    ratings = _find(folder, layout.ratings)
    assert ratings is not None  # locate_movielens only returns folders that hold the ratings
    movies = _find(folder, layout.movies)
    if movies is None:
        log.warning("%s: no %s beside %s; items get no titles or genres", folder, layout.movies, ratings.name)
    return layout.reader(ratings, movies)


def load_interactions(cfg: DataConfig) -> Interactions:
    """`load_raw` then `preprocess`: cleaned, k-core filtered, time-ordered interactions."""
    return preprocess(load_raw(cfg), cfg)


def table_columns(
    path: Path, separator: str | None = None, column_names: list[str] | None = None
) -> list[str]:
    """The column names of a CSV/TSV (optionally .gz) or Parquet file, from its header line or
    schema only (the way `dataset='file'` reads it), so that a setting naming a column can be
    checked before the whole file is loaded. Raises DataError for a missing or unreadable file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    if column_names is not None:
        return list(column_names)
    sep = _guess_separator(path, separator)
    try:
        if sep is None:
            return pl.scan_parquet(path).collect_schema().names()
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            header = fh.readline()
        return pl.read_csv(io.BytesIO(header), separator=sep).columns
    except (OSError, EOFError, pl.exceptions.PolarsError) as err:
        raise DataError(f"{path}: cannot read the column names ({err})") from None


def cache_dir() -> Path:
    """Where downloads go: $BERT4REC_CACHE_DIR, else ~/.cache/bert4rec."""
    env = os.environ.get("BERT4REC_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bert4rec"


def locate_movielens(name: str, data_dir: Path | None = None) -> Path:
    """The folder holding `name`'s ratings file; downloads it into the cache if no local copy exists."""
    layout = _LAYOUTS[name]
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise DataError(f"data_dir {data_dir} is not an existing folder; fix --data-dir / data.data_dir")
    roots = [Path(data_dir).expanduser()] if data_dir is not None else []
    env = os.environ.get("BERT4REC_DATA_DIR")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(cache_dir())
    looked: list[Path] = []
    for root in roots:
        for folder in (root, root / name):
            looked.append(folder)
            if _find(folder, layout.ratings) is not None:
                if data_dir is not None and root != Path(data_dir).expanduser():
                    log.warning("%s not found in data_dir %s; using the copy in %s", name, data_dir, folder)
                return folder
    return _download_movielens(name, looked)


# --------------------------------------------------------------------------------------------- reading


def _find(folder: Path, filename: str) -> Path | None:
    """`folder/filename`, or its gzipped form `filename.gz`."""
    for candidate in (folder / filename, folder / f"{filename}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read the file ({err})") from None
    if not data.strip():
        raise DataError(f"{path}: the file is empty")
    return data


def _read_int_table(
    path: Path, data: bytes, separator: bytes, names: list[str], expected: str
) -> pl.DataFrame:
    """Parse a header-less table of integers fast; on any problem, find and name the first bad line."""
    if separator != b"\t":
        data = data.replace(separator, b"\t")  # polars takes one-byte separators only (ML-1M uses "::")
    try:
        frame = pl.read_csv(
            io.BytesIO(data),
            separator="\t",
            has_header=False,
            new_columns=names,
            schema={n: pl.Int64 for n in names},
            truncate_ragged_lines=False,
        )
    except pl.exceptions.PolarsError as err:
        bad = _bad_line(path, data, len(names), expected, separator)
        raise bad or DataError(f"{path}: cannot parse ({err}); expected {expected}") from None
    frame = frame.filter(~pl.all_horizontal(pl.all().is_null()))  # blank lines
    if frame.null_count().sum_horizontal().item():
        bad = _bad_line(path, data, len(names), expected, separator)
        raise bad or DataError(f"{path}: some lines have empty fields; expected {expected}")
    return frame


def _bad_line(path: Path, data: bytes, n_fields: int, expected: str, separator: bytes) -> DataError | None:
    """Slow path: walk the lines to report the first one that is not `n_fields` integers."""
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        text = line.strip(b"\r").decode("latin-1")
        if not text.strip():
            continue
        fields = text.split("\t")
        reason = None
        if len(fields) != n_fields:
            reason = f"{len(fields)} fields instead of {n_fields}"
        else:
            for k, value in enumerate(fields, start=1):
                try:
                    int(value)
                except ValueError:
                    reason = f"field {k} ({value!r}) is not an integer"
                    break
        if reason:
            shown = text.replace("\t", separator.decode())
            return DataError(
                f"{path}: line {lineno} cannot be parsed: {reason}; expected {expected}, got {shown!r}"
            )
    return None


def _decode_lines(path: Path, encoding: str) -> list[tuple[int, str]]:
    text = _read_bytes(path).decode(encoding)
    return [(i, line.rstrip("\r")) for i, line in enumerate(text.split("\n"), start=1) if line.strip()]


def _int_field(path: Path, lineno: int, value: str, what: str, line: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{path}: line {lineno}: {what} {value!r} is not an integer: {line!r}") from None


def _read_ml1m(ratings: Path, movies: Path | None) -> RawData:
    frame = _read_int_table(
        ratings, _read_bytes(ratings), b"::", ["user_id", "item_id", "rating", "timestamp"],
        "UserID::MovieID::Rating::Timestamp",
    )  # fmt: skip
    items = None
    if movies is not None:
        ids, titles, genres = [], [], []
        for lineno, line in _decode_lines(movies, "latin-1"):
            parts = line.split("::")
            if len(parts) != 3:
                raise DataError(
                    f"{movies}: line {lineno} cannot be parsed: {len(parts)} fields instead of 3; "
                    f"expected MovieID::Title::Genres, got {line!r}"
                )
            ids.append(_int_field(movies, lineno, parts[0], "MovieID", line))
            titles.append(parts[1])
            genres.append(parts[2])
        items = pl.DataFrame(
            {"item_id": ids, "title": titles, "genres": genres},
            schema={"item_id": pl.Int64, "title": pl.Utf8, "genres": pl.Utf8},
        )
    return RawData(frame, items, str(ratings), "title", ["title", "genres"])


def _read_ml100k(ratings: Path, movies: Path | None) -> RawData:
    frame = _read_int_table(
        ratings, _read_bytes(ratings), b"\t", ["user_id", "item_id", "rating", "timestamp"],
        "user<TAB>item<TAB>rating<TAB>timestamp",
    )  # fmt: skip
    items = None
    if movies is not None:
        ids, titles, genres = [], [], []
        n_fields = 5 + len(ML100K_GENRES)
        for lineno, line in _decode_lines(movies, "latin-1"):
            parts = line.split("|")
            if len(parts) != n_fields:
                raise DataError(
                    f"{movies}: line {lineno} cannot be parsed: {len(parts)} fields instead of {n_fields}; "
                    f"expected id|title|release date|video release|url|19 genre flags, got {line!r}"
                )
            flags = parts[5:]
            if any(f not in ("0", "1") for f in flags):
                raise DataError(f"{movies}: line {lineno}: genre flags must be 0 or 1, got {flags}")
            ids.append(_int_field(movies, lineno, parts[0], "movie id", line))
            titles.append(parts[1])
            genres.append("|".join(g for g, f in zip(ML100K_GENRES, flags, strict=True) if f == "1"))
        items = pl.DataFrame(
            {"item_id": ids, "title": titles, "genres": genres},
            schema={"item_id": pl.Int64, "title": pl.Utf8, "genres": pl.Utf8},
        )
    return RawData(frame, items, str(ratings), "title", ["title", "genres"])


def _scan_csv(path: Path, schema: dict[str, type[pl.DataType]]) -> pl.LazyFrame:
    """Lazy CSV scan (only the needed columns are ever materialised); gzip is decompressed first."""
    if path.suffix == ".gz":
        return pl.read_csv(io.BytesIO(_read_bytes(path)), schema_overrides=schema).lazy()
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    return pl.scan_csv(path, schema_overrides=schema)


def _require(path: Path, present: list[str], wanted: dict[str, str]) -> None:
    """Raise naming the first wanted column (and the setting that named it) that the file lacks."""
    for col, setting in wanted.items():
        if col not in present:
            raise DataError(f"{path}: missing column {col!r} ({setting}); columns present: {present}")


def _read_ml_csv(ratings: Path, movies: Path | None) -> RawData:
    """ML-20M / ML-25M: `ratings.csv` (userId,movieId,rating,timestamp) and `movies.csv`."""
    try:
        scan = _scan_csv(
            ratings, {"userId": pl.Int64, "movieId": pl.Int64, "rating": pl.Float64, "timestamp": pl.Int64}
        )
        _require(ratings, scan.collect_schema().names(), {c: "MovieLens format" for c in _ML_CSV_COLS})
        frame = scan.select(*(pl.col(c).alias(canon) for c, canon in _ML_CSV_COLS.items())).collect()
    except pl.exceptions.PolarsError as err:
        raise DataError(f"{ratings}: cannot parse ({err})") from None
    items = None
    if movies is not None:
        try:
            mscan = _scan_csv(movies, {"movieId": pl.Int64, "title": pl.Utf8, "genres": pl.Utf8})
            _require(movies, mscan.collect_schema().names(), {c: "MovieLens format" for c in _ML_MOVIE_COLS})
            items = mscan.select(*(pl.col(c).alias(canon) for c, canon in _ML_MOVIE_COLS.items())).collect()
        except pl.exceptions.PolarsError as err:
            raise DataError(f"{movies}: cannot parse ({err})") from None
    return RawData(frame, items, str(ratings), "title", ["title", "genres"])


_ML_CSV_COLS = {"userId": "user_id", "movieId": "item_id", "rating": "rating", "timestamp": "timestamp"}
_ML_MOVIE_COLS = {"movieId": "item_id", "title": "title", "genres": "genres"}

_LAYOUTS = {
    "ml-1m": _MovieLensLayout("ratings.dat", "movies.dat", _read_ml1m),
    "ml-100k": _MovieLensLayout("u.data", "u.item", _read_ml100k),
    "ml-20m": _MovieLensLayout("ratings.csv", "movies.csv", _read_ml_csv),
    "ml-25m": _MovieLensLayout("ratings.csv", "movies.csv", _read_ml_csv),
}


# --------------------------------------------------------------------------------------------- any file


def _guess_separator(path: Path, separator: str | None) -> str | None:
    """None means Parquet. Else the configured separator, or one guessed from the extension/header."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext in (".parquet", ".pq"):
        return None
    if separator is not None:
        return separator
    if ext in (".tsv", ".tab"):
        return "\t"
    if ext == ".csv":
        return ","
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            header = fh.readline().decode("utf-8", "replace")
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read the file ({err})") from None
    guessed = max(["\t", ",", ";", "|"], key=header.count)
    log.info("%s: no separator configured; guessed %r from the header line", path, guessed)
    return guessed


def _read_table(
    path: Path, separator: str | None, role: str, column_names: list[str] | None = None
) -> pl.DataFrame:
    """Read a CSV/TSV (optionally .gz) or Parquet file whole, with clear errors. With `column_names`
    a text file has no header line and its columns get these names."""
    if not path.exists():
        raise DataError(f"{role} file not found: {path}")
    if not path.is_file():
        raise DataError(f"{role} path {path} is not a file")
    sep = _guess_separator(path, separator)
    try:
        if sep is None:
            frame = pl.read_parquet(path)
        else:
            source = io.BytesIO(_read_bytes(path)) if path.suffix == ".gz" else path
            has_header = column_names is None
            try:
                frame = pl.read_csv(
                    source, separator=sep, infer_schema_length=10_000, has_header=has_header,
                    new_columns=column_names,
                )  # fmt: skip
            except pl.exceptions.ComputeError:  # a type guessed from the first rows fails later on
                if isinstance(source, io.BytesIO):
                    source.seek(0)
                frame = pl.read_csv(
                    source, separator=sep, infer_schema_length=None, has_header=has_header,
                    new_columns=column_names,
                )  # fmt: skip
    except pl.exceptions.NoDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (pl.exceptions.PolarsError, OSError) as err:
        kind = "Parquet" if sep is None else f"{sep!r}-separated text"
        raise DataError(f"{path}: cannot read it as {kind} ({str(err).splitlines()[0]})") from None
    if not frame.columns:
        raise DataError(f"{path}: the file is empty")
    return frame


def _parse_time(frame: pl.DataFrame) -> pl.DataFrame:
    """Turn datetime strings (ISO 8601) into Unix seconds; numbers and datetime dtypes pass through."""
    ts = frame["timestamp"]
    if ts.dtype != pl.Utf8:
        return frame
    if ts.cast(pl.Float64, strict=False).null_count() == ts.null_count():
        return frame  # numeric strings: validate_frame casts them
    try:  # fast path: one format for the whole column, inferred by polars
        parsed = ts.str.to_datetime(strict=False, time_zone="UTC")
        if parsed.null_count() == ts.null_count():
            return frame.with_columns(timestamp=parsed.dt.epoch("s"))
    except pl.exceptions.PolarsError:
        pass
    # mixed ISO 8601 forms ("...Z", "+01:00", with or without time): parse each distinct value
    seconds: dict[str, int] = {}
    for value in ts.drop_nulls().unique().to_list():
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return frame  # not a datetime either: validate_frame names the first bad row
        if when.tzinfo is None:  # naive times are read as UTC
            when = when.replace(tzinfo=timezone.utc)
        seconds[value] = int(when.timestamp())
    return frame.with_columns(timestamp=ts.replace_strict(seconds, return_dtype=pl.Int64))


def _load_file(cfg: DataConfig) -> RawData:
    assert cfg.path is not None  # DataConfig enforces it for dataset='file'
    path = Path(cfg.path).expanduser()
    raw = _read_table(path, cfg.separator, "interactions (data.path)", cfg.column_names)
    wanted = {cfg.user_col: "data.user_col", cfg.item_col: "data.item_col"}
    if cfg.time_col is not None:
        wanted[cfg.time_col] = "data.time_col"
    if cfg.rating_col is not None:
        wanted[cfg.rating_col] = "data.rating_col"
    meta_cols = list(cfg.metadata_cols)
    if cfg.display_col and cfg.display_col not in meta_cols:
        meta_cols.insert(0, cfg.display_col)
    if cfg.items_path is None:
        wanted.update({c: "data.metadata_cols" for c in meta_cols if c not in wanted})
    _require(path, raw.columns, wanted)

    cols = [pl.col(cfg.user_col).alias("user_id"), pl.col(cfg.item_col).alias("item_id")]
    if cfg.time_col is not None:
        cols.append(pl.col(cfg.time_col).alias("timestamp"))
    else:
        log.info("%s: data.time_col is None, so the file's row order is used as the timestamp", path)
        cols.append(pl.int_range(pl.len(), dtype=pl.Int64).alias("timestamp"))
    if cfg.rating_col is not None:
        cols.append(pl.col(cfg.rating_col).alias("rating"))
    frame = _parse_time(raw.select(cols))

    items = None
    display_col = cfg.display_col
    if cfg.items_path is not None:
        items_path = Path(cfg.items_path).expanduser()
        table = _read_table(items_path, cfg.separator, "item metadata (data.items_path)")
        _require(items_path, table.columns, {cfg.item_col: "data.item_col"})
        _require(items_path, table.columns, {c: "data.metadata_cols" for c in meta_cols})
        if not meta_cols:
            meta_cols = [c for c in table.columns if c != cfg.item_col]
        items = table.select(pl.col(cfg.item_col).alias("item_id"), *meta_cols)
        if items["item_id"].dtype != frame["item_id"].dtype:
            items = items.with_columns(pl.col("item_id").cast(frame["item_id"].dtype, strict=False))
        items = items.unique(subset="item_id", keep="first", maintain_order=True)
    elif meta_cols:
        # metadata stored on every interaction row: keep the first value seen for each item
        items = (
            raw.select(pl.col(cfg.item_col).alias("item_id"), *meta_cols)
            .group_by("item_id", maintain_order=True)
            .agg(pl.col(c).first() for c in meta_cols)
        )
    if display_col is None and "title" in meta_cols:
        display_col = "title"
    return RawData(frame, items, str(path), display_col, meta_cols)


# --------------------------------------------------------------------------------------------- download


def _download_movielens(name: str, looked: list[Path]) -> Path:
    """Fetch <name>.zip into the cache, verify its MD5, unpack it; never leaves partial files behind."""
    root = cache_dir()
    base = os.environ.get("BERT4REC_MOVIELENS_URL", MOVIELENS_URL).rstrip("/")
    url = f"{base}/{name}.zip"
    target = root / name
    where = ", ".join(str(p) for p in dict.fromkeys(looked))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"{name} not found locally (looked in: {where}) and the cache {root} cannot be created ({err}); "
            "pass --data-dir or set BERT4REC_DATA_DIR"
        ) from None
    log.info("%s not found locally (looked in: %s); downloading %s into %s", name, where, url, root)
    fd, tmp_name = tempfile.mkstemp(dir=root, prefix=f".{name}.", suffix=".zip.part")
    tmp = Path(tmp_name)
    try:
        md5 = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out:
            try:
                with urlopen(url, timeout=60) as resp:
                    while chunk := resp.read(_CHUNK):
                        md5.update(chunk)
                        out.write(chunk)
            except (OSError, HTTPException, ValueError) as err:
                raise DataError(
                    f"{name} was not found locally and could not be downloaded from {url} ({err}). "
                    f"Looked in: {where}. To use a local copy, unzip {name}.zip from "
                    f"https://grouplens.org/datasets/movielens/ into a folder and pass --data-dir FOLDER "
                    f"(data.data_dir) or set BERT4REC_DATA_DIR=FOLDER."
                ) from None
        actual, expected = md5.hexdigest(), CHECKSUMS[name]
        if actual != expected:
            raise DataError(
                f"checksum mismatch for {url}: expected MD5 {expected}, got {actual}; the download was "
                "deleted. Retry, or download the zip by hand, unzip it and pass --data-dir."
            )
        _extract(tmp, name, target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("%s ready in %s", name, target)
    return target


def _extract(archive: Path, name: str, target: Path) -> None:
    """Unpack into a temporary folder, then move the files in; the ratings file moves last (it marks done)."""
    layout = _LAYOUTS[name]
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}.extract."))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(staging)
        except (zipfile.BadZipFile, OSError) as err:
            msg = f"cannot unpack the downloaded {name}.zip ({err}); retry, or pass --data-dir"
            raise DataError(msg) from None
        source = next((d for d in (staging / name, staging) if _find(d, layout.ratings) is not None), None)
        if source is None:
            raise DataError(f"the {name} archive has no {layout.ratings} (in {name}/ or at its top level)")
        target.mkdir(parents=True, exist_ok=True)
        ratings = _find(source, layout.ratings)
        for entry in sorted(source.iterdir(), key=lambda p: p == ratings):
            os.replace(entry, target / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
