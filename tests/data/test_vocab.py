"""Vocab: external ids <-> indices; a text maps onto an integer id only in its canonical form."""

from __future__ import annotations

import numpy as np
import pytest

from bert4rec.data.vocab import Vocab
from bert4rec.errors import UnknownIdError


@pytest.fixture
def int_vocab() -> Vocab:
    return Vocab(item_ids=[1, 10, 25, -3, 0], user_ids=[7, 70])


def test_ints_and_their_canonical_text_find_the_same_item(int_vocab):
    assert int_vocab.item_idx(10) == int_vocab.item_idx("10") == 2
    assert int_vocab.item_idx(np.int64(25)) == int_vocab.item_idx("25") == 3
    assert int_vocab.item_idx("-3") == 4 and int_vocab.item_idx("0") == 5
    assert int_vocab.user_idx("70") == 1


@pytest.mark.parametrize("text", ["1_0", " 1 ", "+1", "01", "1.0", "١", "１", "-0", "1\n", "", "10 "])
def test_non_canonical_text_finds_no_integer_id(int_vocab, text):
    assert not int_vocab.has_item(text)
    with pytest.raises(UnknownIdError, match="unknown item id"):
        int_vocab.item_idx(text)


def test_booleans_are_not_ids(int_vocab):
    # True == 1 in a dict lookup; a boolean must not find item 1
    assert not int_vocab.has_item(True) and not int_vocab.has_item(False)


def test_text_ids_found_by_int_only_when_stored_as_that_text():
    vocab = Vocab(item_ids=["7", "07", "item_1024"], user_ids=["user_777"])
    assert vocab.item_idx(7) == vocab.item_idx("7") == 1
    assert vocab.item_idx("07") == 2  # the exact text still wins
    assert vocab.item_idx("item_1024") == 3 and vocab.user_idx("user_777") == 0
    assert not vocab.has_item(1024) and not vocab.has_user(777)


def test_two_texts_never_resolve_to_the_same_item(int_vocab):
    texts = ["1", "10", "1_0", " 1 ", "+1", "١", "01", "25", "2_5"]
    found = [int_vocab.item_idx(t) for t in texts if int_vocab.has_item(t)]
    assert len(found) == len(set(found)) == 3


def test_canonical_int_reads_only_the_canonical_decimal_form():
    from bert4rec.data.vocab import canonical_int

    assert [canonical_int(t) for t in ("0", "10", "-3")] == [0, 10, -3]
    assert [canonical_int(t) for t in ("1_0", " 10", "+10", "010", "-0", "١", "", "1.0")] == [None] * 8
