import pytest
import torch
from helpers import assert_predicts_next_item, next_item_rule_batch

from bert4rec.config import ModelConfig
from bert4rec.models import BERT4Rec, SASRec, build_transformer
from bert4rec.training.losses import labelled_hidden, plain_full_loss, training_loss

CFG = ModelConfig(max_len=12, hidden_size=16, num_layers=2, num_heads=2, dropout=0.0)


def test_forward_shapes_and_loss_only_on_labelled_positions():
    model = BERT4Rec(CFG, n_items=30)
    seq = torch.randint(1, 31, (4, 12))
    labels = torch.zeros_like(seq)
    labels[:, -1] = seq[:, -1]
    labels[0, 3] = 5
    assert model(seq).shape == (4, 12, CFG.hidden_size)  # the one entry point: hidden states
    hidden, targets = labelled_hidden(model, seq, labels)
    assert hidden.shape == (5, CFG.hidden_size) and targets.tolist() == [5, *seq[:, -1].tolist()]
    assert torch.isfinite(training_loss(model, seq, labels))
    scores = model.predict(seq)
    assert scores.shape == (4, 31)
    torch.testing.assert_close(scores, model.logits(model(seq)[:, -1]))


def test_padding_does_not_change_predictions():
    model = BERT4Rec(CFG, n_items=30).eval()
    seq = torch.tensor([[3, 4, 5, 31]])  # 31 = [MASK]
    padded = torch.tensor([[0, 0, 0, 3, 4, 5, 31]])
    torch.testing.assert_close(model.predict(seq), model.predict(padded), rtol=1e-5, atol=1e-5)


def test_causal_model_does_not_see_the_future_and_bert_does():
    sasrec, bert = SASRec(CFG, n_items=30).eval(), BERT4Rec(CFG, n_items=30).eval()
    a = torch.tensor([[3, 4, 5, 6]])
    b = torch.tensor([[3, 4, 5, 9]])  # differs only at the last position
    assert torch.allclose(sasrec(a)[:, :3], sasrec(b)[:, :3], atol=1e-6)
    assert not torch.allclose(bert(a)[:, :3], bert(b)[:, :3], atol=1e-6)


def test_weight_tying_shares_the_item_embedding():
    tied = BERT4Rec(CFG, n_items=30)
    untied = BERT4Rec(CFG.model_copy(update={"tie_weights": False}), n_items=30)
    assert tied.item_weights().data_ptr() == tied.item_emb.weight.data_ptr()
    assert untied.num_parameters() > tied.num_parameters()


def test_user_embedding_is_optional_and_used():
    cfg = CFG.model_copy(update={"use_user_embedding": True})
    model = BERT4Rec(cfg, n_items=30, n_users=5).eval()
    seq = torch.tensor([[3, 4, 31], [3, 4, 31]])
    out = model.predict(seq, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1])


def test_too_long_sequences_are_rejected():
    with pytest.raises(ValueError, match="exceeds max_len 12"):
        BERT4Rec(CFG, n_items=30)(torch.ones(1, 13, dtype=torch.long))


def test_build_transformer_rejects_unknown_types():
    assert isinstance(build_transformer("sasrec", CFG, 10), SASRec)
    with pytest.raises(ValueError, match="not a transformer model type"):
        build_transformer("gru4rec", CFG, 10)


@pytest.mark.parametrize("block", ["pre_ln", "ligr"])
def test_model_learns_a_deterministic_next_item_rule(block):
    """Overfit check: item i is always followed by i + 1; both models must learn it, with either block."""
    torch.manual_seed(0)
    cfg = CFG.model_copy(update={"block": block})
    for model in (BERT4Rec(cfg, n_items=20), SASRec(cfg, n_items=20)):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        starts = torch.randint(1, 10, (64,))
        seq = starts[:, None] + torch.arange(6)[None]  # (64, 6) items 1..15
        for _ in range(150):
            inp, labels = next_item_rule_batch(seq, model.causal, mask_idx=21)
            loss = plain_full_loss(model, inp, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert_predicts_next_item(model, mask_idx=21)


def test_ligr_block_gates_each_sublayer_and_uses_a_swiglu_feed_forward():
    """The LiGR block adds two D x D gates per layer and swaps the GELU feed-forward (two biased
    D x 4D matrices) for SwiGLU (three unbiased ones); a closed gate passes the stream through."""
    D, inner = CFG.hidden_size, CFG.ffn_multiplier * CFG.hidden_size
    plain = SASRec(CFG, n_items=30)
    ligr = SASRec(CFG.model_copy(update={"block": "ligr"}), n_items=30).eval()
    per_layer = 2 * (D * D + D) + 3 * D * inner - (2 * D * inner + inner + D)
    assert ligr.num_parameters() - plain.num_parameters() == CFG.num_layers * per_layer

    block, x = ligr.blocks[0], torch.randn(2, 5, D)
    mask = torch.ones(1, 1, 5, 5, dtype=torch.bool)
    with torch.no_grad():
        for gate in (block.attn_gate, block.ffn_gate):
            gate.weight.zero_()
            gate.bias.fill_(-1e4)  # sigmoid -> 0: both sub-layers switched off
    torch.testing.assert_close(block(x, mask), x)
    with torch.no_grad():
        block.attn_gate.bias.fill_(1e4)  # attention fully on, feed-forward off
    expected = x + block.attn(block.ln1(x), mask)
    torch.testing.assert_close(block(x, mask), expected)
