"""The opt-in ONNX Runtime backend (`bert4rec serve --backend onnx`) ranks exactly like eager PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from bert4rec.errors import ConfigError
from bert4rec.inference.recommender import Recommender

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def recs(tiny_artifact):
    return Recommender.load(tiny_artifact), Recommender.load(tiny_artifact, backend="onnx")


def _same(a, b):
    assert (a.path, a.used_length) == (b.path, b.used_length)
    assert [r.item_id for r in a.items] == [r.item_id for r in b.items]
    np.testing.assert_allclose([r.score for r in a.items], [r.score for r in b.items], atol=1e-4)


def test_onnx_backend_matches_eager_for_every_query_type(recs):
    eager, onnx = recs
    assert (eager.backend, onnx.backend) == ("torch", "onnx")
    items = eager.vocab.item_ids
    for user in eager.vocab.user_ids[:5]:
        _same(eager.user_to_item(user, k=10), onnx.user_to_item(user, k=10))
        _same(eager.contextual(user, items[3], k=10), onnx.contextual(user, items[3], k=10))
    for n in (1, 2, 7, eager.max_history + 5):  # longer than max_len: both cut to the same window
        session = [items[i % len(items)] for i in range(n)]
        _same(eager.sequential(session, k=10), onnx.sequential(session, k=10))


def test_onnx_scorer_scores_a_mixed_batch_like_eager(recs):
    eager, onnx = recs
    histories = [np.arange(1, n + 1) % eager.vocab.n_items + 1 for n in (1, 5, 30, 3)]
    users = np.arange(len(histories))
    a, b = eager.scorer.score(users, histories), onnx.scorer.score(users, histories)
    assert a.shape == b.shape
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)


def test_unknown_backend_is_refused(tiny_artifact):
    with pytest.raises(ConfigError, match="backend"):
        Recommender.load(tiny_artifact, backend="tensorrt")


def test_serve_backend_onnx_builds_the_app(tiny_artifact, monkeypatch):
    pytest.importorskip("fastapi")
    import torch
    import uvicorn
    from typer.testing import CliRunner

    from bert4rec.cli import app

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: calls.append(application))
    before = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, ["serve", "--model", str(tiny_artifact), "--backend", "onnx"])
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    assert calls[0].state.recommender.backend == "onnx"


def test_a_ligr_model_exports_and_scores_like_eager():
    """OnnxScorer checks its export against eager PyTorch at construction (and raises if they
    differ); the LiGR block's gates and SwiGLU must survive the export."""
    import torch

    from bert4rec.config import ModelConfig
    from bert4rec.inference.onnx_backend import OnnxScorer
    from bert4rec.models import SASRec

    torch.manual_seed(0)
    model = SASRec(ModelConfig(max_len=12, hidden_size=16, num_heads=2, block="ligr"), n_items=30)
    scorer = OnnxScorer(model, atol=1e-5)
    histories = [np.array([3, 4, 5]), np.arange(1, 20) % 30 + 1]
    expected = model.eval().predict(torch.tensor([[0] * 9 + [3, 4, 5], list(range(9, 21))]))
    np.testing.assert_allclose(scorer.score(np.arange(2), histories).numpy(), expected.numpy(), atol=1e-5)
