"""Content fusion through the pipeline: train, save, load (identical scores), serve item_to_item."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch
from helpers import tiny_config

from bert4rec.artifacts import load_bundle
from bert4rec.errors import ConfigError, DataError
from bert4rec.inference.recommender import Recommender
from bert4rec.pipeline import Prepared, content_vectors, train_and_evaluate
from bert4rec.training.fit import fit_transformer

DIM = 32


class HashedWords:
    """A deterministic stand-in for MiniLM: hashed word counts, L2-normalised, DIM wide."""

    name = "hashed-words-test"

    def encode(self, texts):
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(".", " ").replace(":", " ").split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def fused_config():
    cfg = tiny_config(epochs=1)
    return cfg.model_copy(
        update={"model": cfg.model.model_copy(update={"content_fusion": True, "content_dim": DIM})}
    )


def test_content_vectors_cover_the_catalogue(tiny_prepared):
    vectors = content_vectors(tiny_prepared, HashedWords())
    n = tiny_prepared.split.n_items
    assert vectors.shape == (n + 2, DIM)
    assert not vectors[0].any() and not vectors[n + 1].any()
    assert (vectors[1 : n + 1].norm(dim=1) > 0.99).all()  # every generated item has a title and genre


def test_missing_metadata_and_missing_vectors_are_explained(tiny_prepared, tmp_path):
    bare = Prepared(dataclasses.replace(tiny_prepared.interactions, items=None), tiny_prepared.split, 0.0)
    with pytest.raises(DataError, match="content_fusion needs item titles or metadata"):
        content_vectors(bare, HashedWords())
    with pytest.raises(ConfigError, match="no item text vectors were given"):
        fit_transformer(tiny_prepared.split, fused_config().for_model("bert4rec"), tmp_path, progress=False)


def test_fused_bundle_round_trip_gives_identical_scores_and_serves(tiny_prepared, tmp_path):
    vectors = content_vectors(tiny_prepared, HashedWords())
    run = train_and_evaluate(
        "bert4rec", fused_config(), tiny_prepared, tmp_path, progress=False, content=vectors
    )
    assert run.artifact is not None and run.record["config"]["model"]["content_fusion"] is True
    bundle = load_bundle(run.artifact)  # no encoder needed: the vectors are in model.safetensors
    assert bundle.model.content is not None
    assert torch.equal(bundle.model.content.vectors, vectors)
    split = tiny_prepared.split
    users = split.users("test")[:20]
    histories = split.inputs("test", users)
    assert torch.equal(run.scorer.score(users, histories), Recommender(bundle).scorer.score(users, histories))

    rec = Recommender(bundle)
    item_id = bundle.vocab.item_ids[0]
    result = rec.item_to_item(item_id, k=5)
    assert result.path == "item_vectors" and len(result.items) == 5
    assert item_id not in [r.item_id for r in result.items]
    torch.testing.assert_close(
        rec.item_index.vectors, torch.nn.functional.normalize(bundle.model.item_weights().detach(), dim=1)
    )
