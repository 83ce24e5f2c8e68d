"""Intent vectors and the precomputed user path against the plain model path."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from bert4rec.artifacts import bundle_version, load_bundle
from bert4rec.evaluation.scoring import TransformerScorer
from bert4rec.inference.intents import INTENTS_FILE, IntentEncoder, UserIntents
from bert4rec.inference.recommender import Recommender


@pytest.fixture(scope="module")
def bundle(tiny_artifact):
    return load_bundle(tiny_artifact)


def test_intent_dot_item_vectors_is_the_model_score(bundle):
    enc = IntentEncoder(bundle.model)
    histories = [s for s in bundle.sequences[:20] if len(s)] + [np.array([3]), np.arange(1, 40) % 60 + 1]
    users = np.arange(len(histories))
    q = enc.encode(users, histories)
    assert q.shape == (len(histories), bundle.model.cfg.hidden_size + 1) and (q[:, -1] == 1).all()
    plain = TransformerScorer(bundle.model).score(users, histories).numpy()
    np.testing.assert_allclose(q @ enc.item_vectors().T, plain, rtol=1e-4, atol=1e-4)


def test_model_path_ranks_like_the_plain_scores(bundle):
    """The search path (intent -> index) gives the lists the full-score path gave, filters included."""
    rec = Recommender(bundle, index="exact")
    scorer = TransformerScorer(bundle.model)
    genre = next(iter(rec.catalog.filter._columns["genres"].tokens))
    for u, user in enumerate(rec.vocab.user_ids[:15]):
        history = bundle.sequences[u]
        for filters in (None, {"genres": genre}):
            scores = scorer.score(np.array([u]), [history])[0]
            state = rec.state
            plain = rec._ranked(
                state, scores, exclude=history, k=5, mask=rec._check(state, 5, filters), path="model",
                history_length=len(history), used_length=0,
            )  # fmt: skip
            got = rec.user_to_item(user, 5, filters)
            assert [r.item_id for r in got.items] == [r.item_id for r in plain.items]
            np.testing.assert_allclose(
                [r.score for r in got.items], [r.score for r in plain.items], atol=1e-4
            )


def test_precomputed_user_intents_equal_the_plain_path(bundle):
    fast, plain = Recommender(bundle, precompute=True), Recommender(bundle)
    # only a server precomputes (a one-shot query would pay for every user): the default does not
    assert fast.user_intents is not None and plain.user_intents is None
    for user in fast.vocab.user_ids[:30]:
        a, b = fast.user_to_item(user, k=8), plain.user_to_item(user, k=8)
        assert [r.item_id for r in a.items] == [r.item_id for r in b.items]
        assert a.vector is not None and b.vector is not None
        np.testing.assert_allclose(a.vector, b.vector, rtol=1e-5, atol=1e-5)
    # contextual and sequential are not precomputed: same vector as encoding the history directly
    user, item = fast.vocab.user_ids[2], fast.vocab.item_ids[7]
    u = fast.vocab.user_idx(user)
    history = np.append(bundle.sequences[u], fast.vocab.item_idx(item))
    got = fast.contextual(user, item, k=3).vector
    np.testing.assert_allclose(got, fast.intents.encode_one(u, history), rtol=1e-5, atol=1e-6)


def test_onnx_backend_keeps_the_precomputed_user_path(bundle):
    pytest.importorskip("onnxruntime")
    rec, plain = Recommender(bundle, backend="onnx", precompute=True), Recommender(bundle)
    for user in rec.vocab.user_ids[:5]:
        assert [r.item_id for r in rec.user_to_item(user, 5).items] == [
            r.item_id for r in plain.user_to_item(user, 5).items
        ]
    session = rec.vocab.item_ids[:4]
    a, b = rec.sequential(session, 5), plain.sequential(session, 5)
    assert [r.item_id for r in a.items] == [r.item_id for r in b.items] and a.vector is None


def test_user_intents_cache_is_reused_and_rebuilt_when_stale(tiny_artifact, tmp_path, caplog):
    root = tmp_path / "model"
    shutil.copytree(tiny_artifact, root)
    model = bundle_version(root)  # the cache lives in the live version folder it was computed from
    first = Recommender.load(root, intents_cache=True)
    assert (model / INTENTS_FILE).is_file() and not first.user_intents.from_cache
    assert sorted(p.name for p in model.iterdir() if p.name.startswith(".")) == []  # no temporary files
    second = Recommender.load(root, intents_cache=True)
    assert second.user_intents.from_cache
    np.testing.assert_array_equal(first.user_intents.vectors, second.user_intents.vectors)
    # other weights: the stored file no longer matches and is recomputed
    bundle = load_bundle(root)
    with torch.no_grad():
        bundle.model.ln_f.bias.add_(0.5)
    enc = IntentEncoder(bundle.model)
    fresh = UserIntents.compute(enc, bundle.sequences, "other-weights", model / INTENTS_FILE)
    assert not fresh.from_cache and not np.allclose(fresh.vectors, first.user_intents.vectors)
    # a corrupted file is recomputed, not trusted
    (model / INTENTS_FILE).write_bytes(b"not a safetensors file")
    again = UserIntents.compute(enc, bundle.sequences, "other-weights", model / INTENTS_FILE)
    assert not again.from_cache
    np.testing.assert_allclose(again.vectors, fresh.vectors)
