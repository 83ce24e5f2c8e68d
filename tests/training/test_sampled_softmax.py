"""Sampled softmax with logQ correction (train.loss='sampled')."""

import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_predicts_next_item, next_item_rule_batch

from bert4rec.config import ModelConfig
from bert4rec.models import BERT4Rec, SASRec
from bert4rec.training.losses import (
    full_logits,
    labelled_hidden,
    plain_full_loss,
    sampled_logits,
    training_loss,
)
from bert4rec.training.sampled_softmax import (
    NegativeSampler,
    SampledNegatives,
    sampled_softmax_logits,
    sampled_softmax_loss,
)

CFG = ModelConfig(max_len=12, hidden_size=16, num_layers=2, num_heads=2, dropout=0.0)


def _batch(n_items: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    seq = torch.randint(1, n_items + 1, (4, 12))
    labels = torch.zeros_like(seq)
    labels[:, -1] = seq[:, -1]
    labels[0, 3] = 5
    return seq, labels


def test_sampled_forward_shapes_and_full_path_unchanged():
    model = SASRec(CFG, n_items=30)
    seq, labels = _batch()
    sampler = NegativeSampler.from_counts(torch.arange(31), n_negatives=7, seed=1)
    hidden, targets = labelled_hidden(model, seq, labels)
    assert sampled_logits(model, hidden, targets, sampler.sample()).shape == (5, 1 + 7)
    assert torch.isfinite(training_loss(model, seq, labels, negatives=sampler.sample()))
    # the candidate logits are the full logits at the target and negative columns (before correction)
    negatives = sampler.sample()
    full = full_logits(model, hidden)
    sampled = sampled_logits(model, hidden, targets, negatives)
    torch.testing.assert_close(sampled[:, 0], full[torch.arange(5), targets])
    raw = full[:, negatives.items] - negatives.log_q
    hit = negatives.items[None] == targets[:, None]
    torch.testing.assert_close(sampled[:, 1:][~hit], raw[~hit])
    # loss='full' keeps the original cross-entropy over all items
    assert torch.equal(plain_full_loss(model, seq, labels), F.cross_entropy(full, targets))


def test_item_vectors_match_item_weights_tied_and_untied():
    idx = torch.tensor([[1, 5], [30, 2]])
    for tie in (True, False):
        model = BERT4Rec(CFG.model_copy(update={"tie_weights": tie}), n_items=30)
        torch.testing.assert_close(model.item_vectors(idx), model.item_weights()[idx])


def test_negatives_equal_to_the_target_are_masked():
    negatives = SampledNegatives(torch.tensor([3, 7, 3]), torch.zeros(3))
    logits = sampled_softmax_logits(
        torch.tensor([1.0, 1.0]), torch.ones(2, 3), torch.tensor([3, 9]), negatives
    )  # (2, 4)
    assert torch.isinf(logits[0, 1]) and torch.isinf(logits[0, 3]) and logits[0, 1] < 0
    assert torch.isfinite(logits[0, :3:2]).all() and torch.isfinite(logits[1]).all()
    # position 0 competes with item 7 only: loss = log(1 + e^0) = log 2
    per_row = F.cross_entropy(logits, torch.zeros(2, dtype=torch.int64), reduction="none")
    assert per_row[0].item() == pytest.approx(math.log(2.0))
    assert per_row[1].item() == pytest.approx(math.log(4.0))


def test_label_smoothing_spreads_over_the_rows_candidates_without_its_masked_hits():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.3, float("-inf"), 1.0, 0.0]])
    s = 0.2
    # no masked candidate: torch's label-smoothed cross-entropy with the target in column 0
    plain = F.cross_entropy(logits[:1], torch.zeros(1, dtype=torch.int64), label_smoothing=s)
    torch.testing.assert_close(sampled_softmax_loss(logits[:1], s), plain)
    # a masked accidental hit: the same over the three real candidates, finite
    real = logits[1:, [0, 2, 3]]
    expected = F.cross_entropy(real, torch.zeros(1, dtype=torch.int64), label_smoothing=s)
    torch.testing.assert_close(sampled_softmax_loss(logits[1:], s), expected)
    both = sampled_softmax_loss(logits, s)
    torch.testing.assert_close(both, (plain + expected) / 2)
    assert sampled_softmax_loss(logits, 0.0) < both  # smoothing costs the confident rows


def test_training_loss_passes_label_smoothing_to_both_losses():
    model = SASRec(CFG, n_items=30)
    seq, labels = _batch()
    smoothed = training_loss(model, seq, labels, label_smoothing=0.1)
    torch.testing.assert_close(smoothed, plain_full_loss(model, seq, labels, label_smoothing=0.1))
    assert not torch.allclose(smoothed, training_loss(model, seq, labels))
    negatives = NegativeSampler.from_counts(torch.arange(31), n_negatives=7, seed=1).sample()
    hidden, targets = labelled_hidden(model, seq, labels)
    expected = sampled_softmax_loss(sampled_logits(model, hidden, targets, negatives), 0.1)
    got = training_loss(model, seq, labels, negatives=negatives, label_smoothing=0.1)
    torch.testing.assert_close(got, expected)


def test_logq_correction_by_hand():
    # counts over PAD + 3 items; K = 2 draws -> p = (0, 1/4, 3/4, 0), Q = K p = (0, 1/2, 3/2, 0)
    sampler = NegativeSampler.from_counts(torch.tensor([0, 1, 3, 0]), n_negatives=2)
    assert sampler.log_q[1].item() == pytest.approx(math.log(0.5))
    assert sampler.log_q[2].item() == pytest.approx(math.log(1.5))
    assert torch.isneginf(sampler.log_q[3])  # never drawn
    negatives = SampledNegatives(torch.tensor([1, 2]), sampler.log_q[torch.tensor([1, 2])])
    logits = sampled_softmax_logits(
        torch.tensor([2.0]), torch.tensor([[1.0, 0.5]]), torch.tensor([3]), negatives
    )
    # target uncorrected; negatives: 1 - log(0.5) and 0.5 - log(1.5)
    expected = -2.0 + math.log(math.exp(2.0) + math.exp(1.0) / 0.5 + math.exp(0.5) / 1.5)
    assert sampled_softmax_loss(logits).item() == pytest.approx(expected, rel=1e-6)
    uniform = NegativeSampler.from_counts(torch.tensor([0, 1, 3, 0]), n_negatives=6, distribution="uniform")
    assert torch.allclose(uniform.log_q[1:], torch.full((3,), math.log(2.0)))  # K p = 6 * 1/3 = 2


def test_many_uniform_negatives_approximate_the_full_softmax():
    """With K = 100 x n_items uniform negatives the corrected sum over negatives is an importance
    estimate of the sum over all items, so with logits spread over several units the sampled loss is
    within 3% of the full softmax loss over items 1..n_items (over 50 sampler seeds: relative error
    mean +0.06%, std 0.7%, max 1.6%; with K = 20 x n_items the std was 1.7%, max 4.4%). The full
    loss also has a PAD column, which the sampler never draws, so it is left out of the reference."""
    n_items = 50
    model = SASRec(CFG, n_items=n_items).eval()
    with torch.no_grad():
        model.item_emb.weight.mul_(40.0)  # logits spread over several units, not all ~0
    seq, labels = _batch(n_items)
    with torch.no_grad():
        hidden, targets = labelled_hidden(model, seq, labels)
        full = full_logits(model, hidden)
        reference = F.cross_entropy(full[:, 1:], targets - 1)
        assert full[:, 1:].std() > 1.0
        sampler = NegativeSampler.from_counts(
            torch.ones(n_items + 1), n_negatives=100 * n_items, distribution="uniform", seed=3
        )
        loss = training_loss(model, seq, labels, negatives=sampler.sample())
    assert loss.item() == pytest.approx(reference.item(), rel=0.03)


def test_sampler_is_deterministic_and_pickles_with_its_stream():
    a = NegativeSampler.from_counts(torch.arange(11), 5, seed=7)
    b = NegativeSampler.from_counts(torch.arange(11), 5, seed=7)
    assert torch.equal(a.sample().items, b.sample().items)
    c = pickle.loads(pickle.dumps(a))
    assert torch.equal(a.sample().items, c.sample().items)
    assert (a.sample().items >= 1).all()  # PAD (count 0) is never drawn; item 1..10 only
    with pytest.raises(ValueError, match="uniform or popularity"):
        NegativeSampler.from_counts(torch.arange(11), 5, distribution="zipf")
    with pytest.raises(ValueError, match="PAD"):
        NegativeSampler(torch.ones(4), 2)


def test_model_learns_a_deterministic_next_item_rule_with_sampled_loss():
    """Like the full-softmax overfit check, but each step sees only 8 of the 20 items as negatives."""
    torch.manual_seed(0)
    for model in (BERT4Rec(CFG, n_items=20), SASRec(CFG, n_items=20)):
        sampler = NegativeSampler.from_counts(torch.ones(21), n_negatives=8, distribution="uniform", seed=0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        starts = torch.randint(1, 10, (64,))
        seq = starts[:, None] + torch.arange(6)[None]  # (64, 6) items 1..15
        for _ in range(150):
            inp, labels = next_item_rule_batch(seq, model.causal, mask_idx=21)
            loss = training_loss(model, inp, labels, negatives=sampler.sample())
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert_predicts_next_item(model, mask_idx=21)
