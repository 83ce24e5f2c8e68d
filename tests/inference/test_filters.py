import numpy as np
import polars as pl
import pytest

from bert4rec.data.vocab import Vocab
from bert4rec.errors import FilterError
from bert4rec.inference.filters import MetadataFilter


@pytest.fixture(scope="module")
def meta():
    # item "z" has no metadata row; "x" is in the metadata but not in the vocabulary
    vocab = Vocab(item_ids=["a", "b", "c", "d", "z"], user_ids=[0])
    items = pl.DataFrame(
        {
            "item_id": ["a", "b", "c", "d", "x"],
            "title": ["Heat (1995)", "Comedy Club", "Alien|Resurrection", "Up", "Ghost"],
            "genres": ["Action|Crime|Thriller", "Comedy", "Action|Sci-Fi", "Animation|Comedy", "Drama"],
            "tags": [["space", "Retro"], [], None, ["space"], ["x"]],
            "year": [1995, 2001, 1997, None, 1990],
            "rating": [7.5, 6.0, 6.5, 8.0, 5.0],
            "classic": [True, False, None, False, True],
        }
    )
    return MetadataFilter(items, vocab)


def passing(f: MetadataFilter, filters) -> list[int]:
    return np.flatnonzero(f.mask(filters)).tolist()


def test_no_filters_means_no_mask(meta):
    assert meta.mask(None) is None and meta.mask({}) is None
    assert meta.fields == ["classic", "genres", "rating", "tags", "title", "year"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"genres": "Comedy"}, [2, 4]),  # pipe-separated membership, and a plain single value
        ({"genres": "comedy"}, [2, 4]),  # case-insensitive
        ({"genres": "Action|Sci-Fi"}, [3]),  # the whole value also matches
        ({"genres": "Com"}, []),  # no substring matches
        ({"genres": ["Sci-Fi", "Animation"]}, [3, 4]),  # a list means any of
        ({"genres": "Action", "year": 1995}, [1]),  # several fields: all must match
        ({"tags": "space"}, [1, 4]),  # list column: membership
        ({"tags": "retro"}, [1]),
        ({"year": 1997}, [3]),
        ({"year": "1997"}, [3]),  # a numeric string is accepted for a number column
        ({"rating": 6.5}, [3]),
        ({"classic": True}, [1]),
        ({"classic": False}, [2, 4]),  # missing values never match
        ({"classic": "false"}, [2, 4]),
        ({"title": "heat (1995)"}, [1]),
        ({"title": "Alien"}, [3]),  # titles split on | like any text (none real have one)
    ],
)
def test_matching_rules(meta, filters, expected):
    assert passing(meta, filters) == expected


def test_pad_and_items_without_metadata_never_pass(meta):
    mask = meta.mask({"genres": ["Comedy", "Action", "Sci-Fi", "Animation", "Crime", "Thriller"]})
    assert not mask[0] and not mask[5]


def test_unknown_field_names_the_field_and_the_valid_ones(meta):
    with pytest.raises(
        FilterError, match=r"unknown filter field 'genre'; valid fields: classic, genres,"
    ) as info:
        meta.mask({"genre": "Comedy"})
    assert info.value.field == "genre" and "genres" in info.value.valid


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"year": "nineties"}, "filter 'year' expects a number, got 'nineties' (str)"),
        ({"year": True}, "filter 'year' expects a number, got True (bool)"),
        ({"classic": 1}, "filter 'classic' expects a boolean (true or false), got 1 (int)"),
        ({"genres": False}, "filter 'genres' expects text, got False (bool)"),
        ({"genres": []}, "filter 'genres' has an empty list of values"),
    ],
)
def test_wrong_value_types_are_named(meta, filters, message):
    with pytest.raises(FilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        meta.mask(filters)


def test_without_metadata_every_field_is_unknown():
    f = MetadataFilter(None, Vocab(["a"], [0]))
    with pytest.raises(FilterError, match="valid fields: none"):
        f.mask({"genres": "Comedy"})
