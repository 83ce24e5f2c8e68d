"""The chunked full-softmax loss equals the plain one in value and gradients, whatever the chunking."""

import pytest
import torch
import torch.nn.functional as F

from bert4rec.config import ModelConfig
from bert4rec.models import SASRec
from bert4rec.training.chunked_softmax import linear_cross_entropy
from bert4rec.training.losses import plain_full_loss, training_loss


def _inputs(n: int = 37, v: int = 23, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(v, d, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(v, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, v, (n,), generator=g)
    return hidden, weight, bias, targets


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("chunk", [1, 5, 37, 1000, None])
def test_value_and_gradients_match_plain_cross_entropy(chunk, smoothing):
    hidden, weight, bias, targets = _inputs()
    scale = 0.7  # an upstream gradient other than 1 must be applied in backward
    plain = lambda: F.cross_entropy(hidden @ weight.T + bias, targets, label_smoothing=smoothing)  # noqa: E731
    (scale * plain()).backward()
    expected = [t.grad.clone() for t in (hidden, weight, bias)]
    reference = plain()
    for t in (hidden, weight, bias):
        t.grad = None
    loss = linear_cross_entropy(hidden, weight, bias, targets, chunk, label_smoothing=smoothing)
    (scale * loss).backward()
    torch.testing.assert_close(loss, reference)
    for got, want in zip((hidden.grad, weight.grad, bias.grad), expected, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_gradcheck(smoothing):
    hidden, weight, bias, targets = _inputs(n=6, v=5, d=3)
    loss = lambda h, w, b: linear_cross_entropy(h, w, b, targets, 4, smoothing)  # noqa: E731
    assert torch.autograd.gradcheck(loss, (hidden, weight, bias))


def test_no_gradients_are_computed_without_grad():
    hidden, weight, bias, targets = _inputs()
    with torch.no_grad():
        loss = linear_cross_entropy(hidden, weight, bias, targets, 4)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(hidden @ weight.T + bias, targets))


def test_shape_mismatch_is_refused():
    hidden, weight, bias, targets = _inputs()
    with pytest.raises(ValueError, match="must agree"):
        linear_cross_entropy(hidden, weight[:, :3], bias, targets)
    with pytest.raises(ValueError, match="chunk"):
        linear_cross_entropy(hidden, weight, bias, targets, 0)
    with pytest.raises(ValueError, match="label_smoothing"):
        linear_cross_entropy(hidden, weight, bias, targets, label_smoothing=1.0)


def test_model_training_loss_matches_forward_and_trains_the_same_parameters():
    torch.manual_seed(0)
    model = SASRec(ModelConfig(max_len=12, hidden_size=16, num_layers=1, num_heads=2), n_items=40).eval()
    seq = torch.randint(1, 41, (4, 12))
    seq[0, :5] = 0  # left padding: padded positions carry no label
    labels = torch.roll(seq, -1, dims=1)
    labels[:, -1] = 0
    labels[seq == 0] = 0
    reference = plain_full_loss(model, seq, labels)
    reference.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    loss = training_loss(model, seq, labels)
    loss.backward()
    torch.testing.assert_close(loss, reference)
    got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-4, msg=name)


def test_mixed_precision_step_runs_the_softmax_in_float32():
    torch.manual_seed(0)
    model = SASRec(ModelConfig(max_len=8, hidden_size=16, num_layers=1, num_heads=2), n_items=30)
    seq = torch.randint(1, 31, (3, 8))
    labels = torch.roll(seq, -1, dims=1)
    labels[:, -1] = 0
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = training_loss(model, seq, labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert model.item_emb.weight.grad is not None and torch.isfinite(model.item_emb.weight.grad).all()
    reference = plain_full_loss(model, seq, labels)  # float32 reference, no autocast
    torch.testing.assert_close(loss, reference, atol=0.05, rtol=0.01)
