"""Item text vectors for content fusion (`item_text_vectors`), with a stand-in encoder and with MiniLM."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from bert4rec.data.vocab import Vocab
from bert4rec.errors import ContentUnavailableError
from bert4rec.text import MiniLMEncoder, item_text_vectors


class Recording:
    """Returns one distinct unit vector per text and remembers what it was asked to embed."""

    name = "recording-test"

    def __init__(self, dim: int = 4) -> None:
        self.dim = dim
        self.texts: list[str] = []

    def encode(self, texts):
        self.texts += list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[np.arange(len(texts)), np.arange(len(texts)) % self.dim] = 1.0
        return out


def test_rows_follow_item_indices_and_items_without_text_are_zero():
    vocab = Vocab([10, 20, 30], [0])
    items = pl.DataFrame(
        {"item_id": [30, 10], "title": ["Heat (1995)", "Up (2009)"], "genres": ["Crime", None]}
    )
    encoder = Recording()
    vectors = item_text_vectors(items, vocab, "title", encoder)
    assert vectors.shape == (3 + 2, 4) and vectors.dtype == torch.float32
    assert encoder.texts == ["Up (2009)", "Heat (1995). genres: Crime"]  # item 20 has no text: not embedded
    assert vectors[1].tolist() == [1, 0, 0, 0] and vectors[3].tolist() == [0, 1, 0, 0]
    for row in (0, 2, 4):  # PAD, the item without metadata, MASK
        assert not vectors[row].any()


def test_no_text_at_all_is_an_actionable_error():
    with pytest.raises(ContentUnavailableError, match="turn model.content_fusion off"):
        item_text_vectors(None, Vocab([1, 2], [0]), None, Recording())


@pytest.fixture(scope="module")
def minilm():
    try:
        return MiniLMEncoder().load()
    except Exception as err:  # noqa: BLE001 - any failure to load offline means: skip
        pytest.skip(f"all-MiniLM-L6-v2 cannot be loaded offline ({type(err).__name__}: {err})")


def test_minilm_vectors_put_a_sequel_next_to_its_original(minilm):
    titles = [
        "Star Wars: Episode IV - A New Hope (1977)",
        "Sleepless in Seattle (1993)",
        "Star Wars: Episode V - The Empire Strikes Back (1980)",
        "Toy Story (1995)",
    ]
    genres = ["Action|Adventure|Sci-Fi", "Comedy|Romance", "Action|Adventure|Sci-Fi", "Animation|Children's"]
    vocab = Vocab([1, 2, 3, 4], [0])
    items = pl.DataFrame({"item_id": [1, 2, 3, 4], "title": titles, "genres": genres})
    vectors = item_text_vectors(items, vocab, "title", minilm)
    assert vectors.shape == (6, 384)
    assert not vectors[0].any() and not vectors[5].any()
    torch.testing.assert_close(vectors[1:5].norm(dim=1), torch.ones(4))
    sims = vectors[1:5] @ vectors[3]  # cosine to Episode V
    assert int(sims[:2].argmax()) == 0 and sims[0] > sims[1] + 0.2, sims


def test_a_missing_encoder_package_names_the_extra(monkeypatch):
    import importlib.util

    from bert4rec.config import build_config
    from bert4rec.pipeline import prepare

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sentence_transformers" else real(name, *a),
    )
    cfg = build_config("demo", {"data": {"metadata_cols": ["title"]}})
    with pytest.raises(ContentUnavailableError, match=r'pip install "bert4rec\[serve\]"'):
        prepare(cfg)
