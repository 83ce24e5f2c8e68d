"""Loaders on tiny files written in each supported format, the download path, and every bad-input error."""

from __future__ import annotations

import gzip
import hashlib
import logging
import urllib.error
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from bert4rec.config import DataConfig
from bert4rec.data import datasets
from bert4rec.data.datasets import load_interactions, load_raw
from bert4rec.data.interactions import preprocess
from bert4rec.errors import DataError

ML1M_RATINGS = "1::10::5::100\n1::20::3::200\n1::30::4::200\n2::10::4::50\n2::73::5::60\n"
ML1M_MOVIES = "10::Heat (1995)::Action|Crime|Thriller\n20::Toy Story (1995)::Animation\n73::Misérables, Les (1995)::Drama|Musical\n"  # noqa: E501
GENRE_FLAGS_DRAMA_MUSICAL = ["0"] * 19
GENRE_FLAGS_DRAMA_MUSICAL[8] = GENRE_FLAGS_DRAMA_MUSICAL[12] = "1"  # Drama, Musical


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Never touch ~/.cache, $BERT4REC_DATA_DIR or the network: every lookup stays inside tmp_path."""
    monkeypatch.setenv("BERT4REC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BERT4REC_DATA_DIR", raising=False)
    monkeypatch.setenv("BERT4REC_MOVIELENS_URL", (tmp_path / "no-server").as_uri())


def write_ml1m(folder: Path, ratings: str = ML1M_RATINGS, movies: str | None = ML1M_MOVIES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text(ratings, encoding="latin-1")
    if movies is not None:
        (folder / "movies.dat").write_bytes(movies.encode("latin-1"))
    return folder


# --------------------------------------------------------------------------------------------- MovieLens


def test_ml1m_reads_dat_files_with_latin1_titles(tmp_path):
    write_ml1m(tmp_path / "ml-1m")
    raw = load_raw(DataConfig(dataset="ml-1m", data_dir=tmp_path))  # finds the ml-1m/ subfolder
    assert raw.frame.columns == ["user_id", "item_id", "rating", "timestamp"]
    assert raw.frame.rows() == [
        (1, 10, 5, 100), (1, 20, 3, 200), (1, 30, 4, 200), (2, 10, 4, 50), (2, 73, 5, 60),
    ]  # fmt: skip
    assert raw.source.endswith("ratings.dat")
    assert raw.display_col == "title" and raw.metadata_cols == ["title", "genres"]
    assert raw.items is not None
    by_id = {r["item_id"]: r for r in raw.items.iter_rows(named=True)}
    assert by_id[73] == {"item_id": 73, "title": "Misérables, Les (1995)", "genres": "Drama|Musical"}
    assert by_id[10]["genres"] == "Action|Crime|Thriller"


def test_ml1m_found_directly_in_data_dir_or_via_env(tmp_path, monkeypatch):
    folder = write_ml1m(tmp_path / "copy")
    assert load_raw(DataConfig(dataset="ml-1m", data_dir=folder)).frame.height == 5
    monkeypatch.setenv("BERT4REC_DATA_DIR", str(folder))
    assert load_raw(DataConfig(dataset="ml-1m")).frame.height == 5


def test_ml1m_without_movies_file_loads_ratings_without_metadata(tmp_path, caplog):
    write_ml1m(tmp_path, movies=None)
    with caplog.at_level(logging.WARNING):
        raw = load_raw(DataConfig(dataset="ml-1m", data_dir=tmp_path))
    assert raw.items is None and raw.frame.height == 5
    assert "movies.dat" in caplog.text


def test_ml1m_skips_blank_lines_and_crlf(tmp_path):
    write_ml1m(tmp_path, ratings="1::10::5::100\r\n\n2::20::3::200\r\n\n")
    raw = load_raw(DataConfig(dataset="ml-1m", data_dir=tmp_path))
    assert raw.frame.rows() == [(1, 10, 5, 100), (2, 20, 3, 200)]


def test_ml100k_reads_gzipped_udata_and_genre_flags(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data.gz").write_bytes(gzip.compress(b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n"))
    flags_toy = ["0"] * 19
    flags_toy[3] = flags_toy[4] = flags_toy[5] = "1"  # Animation, Children's, Comedy
    lines = [
        "242|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags_toy),
        "302|Misérables, Les (1995)|01-Jan-1995||http://y|" + "|".join(GENRE_FLAGS_DRAMA_MUSICAL),
    ]
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    raw = load_raw(DataConfig(dataset="ml-100k", data_dir=tmp_path))
    assert raw.frame.rows() == [(196, 242, 3, 881250949), (186, 302, 3, 891717742)]
    assert raw.items is not None
    assert raw.items.rows() == [
        (242, "Toy Story (1995)", "Animation|Children's|Comedy"),
        (302, "Misérables, Les (1995)", "Drama|Musical"),
    ]


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m"])
def test_ml20m_and_ml25m_read_csv(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3.5,1000\n1,3,4.0,900\n")
    (folder / "movies.csv").write_text(
        'movieId,title,genres\n2,"American President, The (1995)",Comedy|Drama|Romance\n'
        "3,Heat (1995),Action\n"
    )
    raw = load_raw(DataConfig(dataset=name, data_dir=tmp_path))
    assert raw.frame.rows() == [(1, 2, 3.5, 1000), (1, 3, 4.0, 900)]
    assert raw.frame.columns == ["user_id", "item_id", "rating", "timestamp"]
    assert raw.items is not None
    assert raw.items.row(0) == (2, "American President, The (1995)", "Comedy|Drama|Romance")


def test_generated_and_load_interactions_equals_preprocess_of_load_raw(tmp_path):
    cfg = DataConfig(dataset="generated", n_users=40, n_items=30, seed=3)
    raw = load_raw(cfg)
    assert raw.frame.height > 0 and raw.items is not None
    a, b = load_interactions(cfg), preprocess(load_raw(cfg), cfg)
    assert a.frame.equals(b.frame) and a.fingerprint == b.fingerprint


# --------------------------------------------------------------------------------------------- any file


def _file_cfg(path: Path, **kw: object) -> DataConfig:
    base: dict[str, object] = {"user_col": "uid", "item_col": "sku", "time_col": "ts"}
    base.update(kw)
    return DataConfig(dataset="file", path=path, **base)


@pytest.mark.parametrize(
    ("name", "sep"),
    [("log.csv", ","), ("log.tsv", "\t"), ("log.tab", "\t"), ("log.csv.gz", ","), ("log.txt", ";")],
)
def test_file_csv_tsv_gz_with_custom_columns(tmp_path, name, sep):
    text = sep.join(["uid", "sku", "ts", "stars", "extra"]) + "\n"
    rows = [["u1", "i9", "20", "4", "x"], ["u1", "i8", "10", "5", "y"]]
    text += "".join(sep.join(r) + "\n" for r in rows)
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    raw = load_raw(_file_cfg(path, rating_col="stars"))  # .txt: separator guessed from the header
    assert raw.frame.columns == ["user_id", "item_id", "timestamp", "rating"]
    assert raw.frame.rows() == [("u1", "i9", 20, 4), ("u1", "i8", 10, 5)]
    assert raw.items is None and raw.source == str(path)


def test_file_explicit_separator_wins(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("uid|sku|ts\n1|2|3\n")
    assert load_raw(_file_cfg(path, separator="|")).frame.rows() == [(1, 2, 3)]


def test_file_parquet_with_datetime_column(tmp_path):
    path = tmp_path / "log.parquet"
    when = [datetime(2020, 1, 1, tzinfo=timezone.utc), datetime(2020, 1, 2, tzinfo=timezone.utc)]
    pl.DataFrame({"uid": [1, 1], "sku": [7, 8], "ts": when}).write_parquet(path)
    raw = load_raw(_file_cfg(path))
    cleaned = preprocess(raw, DataConfig(min_user_interactions=1, min_item_interactions=1))
    assert cleaned.frame["timestamp"].to_list() == [1577836800, 1577923200]


@pytest.mark.parametrize(
    "values",
    [
        ["2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z", "2020-01-01T00:00:10Z"],  # one format (fast path)
        ["2020-01-01 00:00:00", "2020-01-02 00:00:00", "2020-01-01 00:00:10"],  # naive: read as UTC
        ["2020-01-01T01:00:00+01:00", "2020-01-02", "2020-01-01 00:00:10"],  # mixed forms
    ],
)
def test_file_iso_datetime_strings_become_epoch_seconds(tmp_path, values):
    path = tmp_path / "log.csv"
    rows = zip([1, 1, 2], [7, 8, 7], values, strict=True)
    path.write_text("uid,sku,ts\n" + "".join(f"{u},{i},{v}\n" for u, i, v in rows))
    raw = load_raw(_file_cfg(path))
    assert raw.frame["timestamp"].to_list() == [1577836800, 1577923200, 1577836810]


def test_file_without_time_column_uses_row_order(tmp_path, caplog):
    path = tmp_path / "log.csv"
    path.write_text("uid,sku\n1,5\n1,3\n2,5\n")
    with caplog.at_level(logging.INFO, logger="bert4rec.data.datasets"):
        raw = load_raw(_file_cfg(path, time_col=None))
    assert raw.frame["timestamp"].to_list() == [0, 1, 2]
    assert "row order" in caplog.text


def test_file_items_path_metadata(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("uid,sku,ts\n1,5,1\n1,3,2\n")
    items_path = tmp_path / "items.tsv"
    items_path.write_text(
        "sku\tname\tcolour\tprice\n5\tRed shoe\tred\t9\n3\tBlue hat\tblue\t4\n5\tdup\tx\t0\n"
    )
    raw = load_raw(_file_cfg(path, items_path=items_path, metadata_cols=["colour"], display_col="name"))
    assert raw.items is not None
    assert raw.items.rows() == [(5, "Red shoe", "red"), (3, "Blue hat", "blue")]  # first row per item wins
    assert raw.display_col == "name" and raw.metadata_cols == ["name", "colour"]
    everything = load_raw(_file_cfg(path, items_path=items_path))  # no metadata_cols: all other columns
    assert everything.items is not None and everything.items.columns == ["item_id", "name", "colour", "price"]


def test_file_items_path_key_is_cast_to_the_interaction_id_type(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("uid,sku,ts\n1,5,1\n1,3,2\n")
    items_path = tmp_path / "items.parquet"
    pl.DataFrame({"sku": ["5", "3"], "title": ["Five", "Three"]}).write_parquet(items_path)
    raw = load_raw(_file_cfg(path, items_path=items_path))
    assert raw.items is not None and raw.items["item_id"].dtype == raw.frame["item_id"].dtype
    assert raw.display_col == "title"  # a 'title' column is the display column unless told otherwise


def test_file_metadata_taken_from_interactions_when_no_items_file(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("uid,sku,ts,title,genre\n1,5,1,Five,A\n2,5,2,Five again,A\n1,3,3,Three,B\n")
    raw = load_raw(_file_cfg(path, metadata_cols=["title", "genre"]))
    assert raw.frame.columns == ["user_id", "item_id", "timestamp"]
    assert raw.items is not None and raw.items.rows() == [(5, "Five", "A"), (3, "Three", "B")]
    assert raw.display_col == "title"


# --------------------------------------------------------------------------------------------- download


def _serve_zip(tmp_path: Path, monkeypatch, name: str = "ml-1m") -> str:
    """Build <name>.zip (with the archive's own <name>/ folder) under a file:// 'server'; return its MD5."""
    server = tmp_path / "server"
    server.mkdir()
    archive = server / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{name}/ratings.dat", ML1M_RATINGS)
        zf.writestr(f"{name}/movies.dat", ML1M_MOVIES.encode("latin-1"))
        zf.writestr(f"{name}/README", "tiny")
    monkeypatch.setenv("BERT4REC_MOVIELENS_URL", server.as_uri())
    return hashlib.md5(archive.read_bytes()).hexdigest()


def _cache_files(tmp_path: Path) -> list[str]:
    cache = tmp_path / "cache"
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) if cache.exists() else []


def test_download_verifies_checksum_extracts_and_is_cached(tmp_path, monkeypatch):
    md5 = _serve_zip(tmp_path, monkeypatch)
    monkeypatch.setitem(datasets.CHECKSUMS, "ml-1m", md5)
    raw = load_raw(DataConfig(dataset="ml-1m"))
    assert raw.frame.height == 5 and raw.items is not None
    assert _cache_files(tmp_path) == ["ml-1m", "ml-1m/README", "ml-1m/movies.dat", "ml-1m/ratings.dat"]

    def no_network(*args, **kwargs):
        raise AssertionError("a cached copy must not be downloaded again")

    monkeypatch.setattr(datasets, "urlopen", no_network)
    assert load_raw(DataConfig(dataset="ml-1m")).frame.height == 5


def test_download_with_wrong_checksum_is_deleted(tmp_path, monkeypatch):
    md5 = _serve_zip(tmp_path, monkeypatch)
    monkeypatch.setitem(datasets.CHECKSUMS, "ml-1m", "0" * 32)
    with pytest.raises(DataError, match="checksum mismatch") as err:
        load_raw(DataConfig(dataset="ml-1m"))
    assert f"expected MD5 {'0' * 32}, got {md5}" in str(err.value)
    assert _cache_files(tmp_path) == []


def test_no_network_error_says_where_it_looked_and_what_to_do(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(datasets, "urlopen", offline)
    monkeypatch.setenv("BERT4REC_DATA_DIR", str(tmp_path / "env-dir"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        load_raw(DataConfig(dataset="ml-1m", data_dir=tmp_path / "empty"))
    msg = str(err.value)
    assert "could not be downloaded" in msg and "name resolution" in msg
    for looked in ("empty", "empty/ml-1m", "env-dir", "env-dir/ml-1m", "cache", "cache/ml-1m"):
        assert str(tmp_path / looked) in msg
    assert "--data-dir" in msg and "BERT4REC_DATA_DIR" in msg
    assert _cache_files(tmp_path) == []


def test_interrupted_download_leaves_nothing_behind(tmp_path, monkeypatch):
    class Broken:
        def __init__(self) -> None:
            self.calls = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n):
            self.calls += 1
            if self.calls > 1:
                raise ConnectionResetError("connection reset by peer")
            return b"PK" * 100

    monkeypatch.setattr(datasets, "urlopen", lambda *a, **k: Broken())
    with pytest.raises(DataError, match="connection reset"):
        load_raw(DataConfig(dataset="ml-1m"))
    assert _cache_files(tmp_path) == []


def test_checksums_are_the_published_grouplens_values():
    assert datasets.CHECKSUMS == {
        "ml-100k": "0e33842e24a9c977be4e0107933c0723",
        "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
        "ml-20m": "cd245b17a1ae2cc31bb14903e1204af3",
        "ml-25m": "6b51fb2759a8657d3bfcbfc42b592ada",
    }


# --------------------------------------------------------------------------------------------- bad input


def test_unparseable_ratings_line_names_file_and_line(tmp_path):
    write_ml1m(tmp_path, ratings="1::10::5::100\n1::20::3::200\n1::20::3\n")
    with pytest.raises(DataError) as err:
        load_raw(DataConfig(dataset="ml-1m", data_dir=tmp_path))
    msg = str(err.value)
    assert str(tmp_path / "ratings.dat") in msg and "line 3" in msg and "3 fields instead of 4" in msg
    assert "'1::20::3'" in msg and "UserID::MovieID::Rating::Timestamp" in msg


@pytest.mark.parametrize(
    ("bad", "reason"),
    [("1::x::5::100", "field 2 ('x') is not an integer"), ("1::10::5::100::7", "5 fields instead of 4")],
)
def test_bad_ratings_values_name_the_line(tmp_path, bad, reason):
    write_ml1m(tmp_path, ratings=f"1::10::5::100\n\n{bad}\n")
    with pytest.raises(DataError, match="line 3") as err:
        load_raw(DataConfig(dataset="ml-1m", data_dir=tmp_path))
    assert reason in str(err.value)


def test_non_numeric_timestamp_in_ml100k_names_the_line(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\t3\t881250949\n1\t3\t3\tyesterday\n")
    with pytest.raises(DataError, match=r"u\.data: line 2 .*field 4 \('yesterday'\) is not an integer"):
        load_raw(DataConfig(dataset="ml-100k", data_dir=tmp_path))


def test_bad_movies_line_names_the_line(tmp_path):
    write_ml1m(tmp_path, movies="10::Heat (1995)::Action\n20::Broken title\n")
    with pytest.raises(DataError, match=r"movies\.dat: line 2 .*2 fields instead of 3"):
        load_raw(DataConfig(dataset="ml-1m", data_dir=tmp_path))
    write_ml1m(tmp_path, movies="ten::Heat (1995)::Action\n")
    with pytest.raises(DataError, match=r"movies\.dat: line 1: MovieID 'ten' is not an integer"):
        load_raw(DataConfig(dataset="ml-1m", data_dir=tmp_path))


def test_bad_uitem_genre_flags(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\t3\t4\n")
    (tmp_path / "u.item").write_text("2|T|d||u|" + "|".join(["2"] * 19) + "\n")
    with pytest.raises(DataError, match=r"u\.item: line 1: genre flags must be 0 or 1"):
        load_raw(DataConfig(dataset="ml-100k", data_dir=tmp_path))


def test_empty_ratings_file(tmp_path):
    write_ml1m(tmp_path, ratings="\n")
    with pytest.raises(DataError, match=r"ratings\.dat: the file is empty"):
        load_raw(DataConfig(dataset="ml-1m", data_dir=tmp_path))


@pytest.mark.parametrize(
    ("content", "match"), [("", "the file is empty"), ("uid,sku,ts\n", "data set is empty")]
)
def test_empty_csv(tmp_path, content, match):
    path = tmp_path / "log.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=match) as err:
        load_interactions(_file_cfg(path))
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError, match=rf"interactions \(data.path\) file not found: {path}"):
        load_raw(_file_cfg(path))
    with pytest.raises(DataError, match=r"item metadata \(data.items_path\) file not found"):
        (tmp_path / "log.csv").write_text("uid,sku,ts\n1,2,3\n")
        load_raw(_file_cfg(tmp_path / "log.csv", items_path=tmp_path / "items.csv"))


def test_missing_column_lists_the_columns_present(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,sku,ts\n1,2,3\n")
    with pytest.raises(DataError) as err:
        load_raw(_file_cfg(path))
    assert str(err.value) == (
        f"{path}: missing column 'uid' (data.user_col); columns present: ['user', 'sku', 'ts']"
    )
    with pytest.raises(DataError, match=r"missing column 'genre' \(data.metadata_cols\)"):
        load_raw(_file_cfg(path, user_col="user", metadata_cols=["genre"]))


def test_missing_column_in_items_file(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("uid,sku,ts\n1,2,3\n")
    items_path = tmp_path / "items.csv"
    items_path.write_text("id,title\n2,Two\n")
    match = r"items\.csv: missing column 'sku' \(data.item_col\); columns present: \['id', 'title'\]"
    with pytest.raises(DataError, match=match):
        load_raw(_file_cfg(path, items_path=items_path))


def test_missing_column_in_ml20m_csv(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,itemId,rating,timestamp\n1,2,3,4\n")
    with pytest.raises(DataError, match=r"ratings\.csv: missing column 'movieId'.*'itemId'"):
        load_raw(DataConfig(dataset="ml-20m", data_dir=tmp_path))


def test_non_numeric_timestamp_names_the_row(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("uid,sku,ts\n1,2,100\n1,3,soon\n")
    with pytest.raises(DataError) as err:
        load_interactions(_file_cfg(path))
    msg = str(err.value)
    assert str(path) in msg and "'timestamp'" in msg and "data row 2" in msg and "'soon'" in msg


def test_unreadable_parquet(tmp_path):
    path = tmp_path / "log.parquet"
    path.write_text("not parquet")
    with pytest.raises(DataError, match=r"log\.parquet: cannot read it as Parquet"):
        load_raw(_file_cfg(path))


def test_data_dir_that_does_not_exist(tmp_path):
    with pytest.raises(DataError, match=r"data_dir .*nowhere is not an existing folder"):
        load_raw(DataConfig(dataset="ml-1m", data_dir=tmp_path / "nowhere"))


def test_headerless_file_with_column_names_keeps_the_first_line(tmp_path):
    path = tmp_path / "beauty.txt.gz"
    lines = "\n".join(f"{u} {i}" for u in (1, 2) for i in (3, 1, 2, 5, 4)) + "\n"
    path.write_bytes(gzip.compress(lines.encode()))
    cfg = DataConfig(
        dataset="file", path=path, column_names=["user_id", "item_id"], separator=" ", time_col=None
    )
    raw = load_raw(cfg)
    assert raw.frame.height == 10  # the first line is data, not a header
    assert raw.frame["item_id"].to_list()[:5] == [3, 1, 2, 5, 4]
    assert raw.frame["timestamp"].to_list() == list(range(10))  # file order is the time order
