"""Content fusion in the Transformer backbone: shapes, the fixed text buffer, the unchanged ID-only
model, and a cold-start oracle (a never-seen item that reads like a popular one)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bert4rec.config import ModelConfig
from bert4rec.inference.catalog import reset_items
from bert4rec.models import BERT4Rec, SASRec, build_transformer
from bert4rec.models.transformer import SequenceTransformer
from bert4rec.training.losses import full_logits, labelled_hidden, plain_full_loss, training_loss

N_ITEMS, C = 30, 8
CFG = ModelConfig(max_len=12, hidden_size=16, num_layers=2, num_heads=2, dropout=0.0)
FUSED = CFG.model_copy(update={"content_fusion": True, "content_dim": C})


def text_vectors(n_items: int = N_ITEMS, dim: int = C, seed: int = 0) -> torch.Tensor:
    """(n_items + 2, dim) unit vectors, PAD and MASK rows non-zero on purpose (the model zeroes them)."""
    return F.normalize(torch.randn(n_items + 2, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.fixture
def one_thread():
    """The training tests are tiny; one thread avoids oversubscribing a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cls", [BERT4Rec, SASRec])
def test_fused_model_shapes(cls):
    model = cls(FUSED, N_ITEMS, content=text_vectors())
    assert model.content is not None
    assert model.content.vectors.shape == (N_ITEMS + 2, C)
    assert not model.content.vectors[0].any() and not model.content.vectors[-1].any()  # PAD, MASK
    seq = torch.randint(1, N_ITEMS + 1, (4, 12))
    labels = torch.zeros_like(seq)
    labels[:, -1] = seq[:, -1]
    hidden, targets = labelled_hidden(model, seq, labels)
    assert full_logits(model, hidden).shape == (4, N_ITEMS + 1)
    assert torch.isfinite(training_loss(model, seq, labels))
    assert model.predict(seq).shape == (4, N_ITEMS + 1)
    weights = model.item_weights()
    assert weights.shape == (N_ITEMS + 1, 16)
    assert not weights[0].any()  # PAD stays a zero vector: no bias in the projection


def test_text_vectors_are_a_fixed_buffer_and_only_the_projection_learns():
    model = BERT4Rec(FUSED, N_ITEMS, content=text_vectors())
    assert model.content is not None
    params = dict(model.named_parameters())
    assert "content.vectors" not in params and "content.proj.weight" in params
    assert "content.vectors" in dict(model.named_buffers())
    assert not model.content.vectors.requires_grad
    before = model.content.vectors.clone()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    seq = torch.randint(1, N_ITEMS + 1, (4, 12))
    loss = training_loss(model, seq, seq)
    loss.backward()
    assert model.content.proj.weight.grad is not None and model.content.proj.weight.grad.abs().sum() > 0
    opt.step()
    assert torch.equal(model.content.vectors, before)


@pytest.mark.parametrize("tie_weights", [True, False])
def test_id_only_model_is_unchanged(tie_weights):
    """No content state without fusion; a fused model with zero text vectors is the ID-only model bit
    for bit (same seed -> same shared parameters, same outputs)."""
    cfg = CFG.model_copy(update={"tie_weights": tie_weights})
    torch.manual_seed(0)
    plain = BERT4Rec(cfg, N_ITEMS)
    torch.manual_seed(0)
    fused = BERT4Rec(cfg.model_copy(update={"content_fusion": True, "content_dim": C}), N_ITEMS)
    assert plain.content is None
    assert not any("content" in k for k in plain.state_dict())
    extra = set(fused.state_dict()) - set(plain.state_dict())
    assert extra == {"content.vectors", "content.proj.weight"}
    for name, value in plain.state_dict().items():
        assert torch.equal(value, fused.state_dict()[name]), name
    plain.eval(), fused.eval()
    seq = torch.randint(0, N_ITEMS + 2, (3, 12))  # PAD, items and MASK
    labels = torch.randint(0, N_ITEMS + 1, (3, 12))
    assert torch.equal(plain.predict(seq), fused.predict(seq))
    assert torch.equal(plain(seq, labels)[1], fused(seq, labels)[1])
    # an ID-only state dict still loads strictly into an ID-only model
    BERT4Rec(cfg, N_ITEMS).load_state_dict(plain.state_dict(), strict=True)


def test_content_vectors_are_checked():
    with pytest.raises(ValueError, match="content_fusion is off"):
        BERT4Rec(CFG, N_ITEMS, content=text_vectors())
    with pytest.raises(ValueError, match=r"expected \(32, 8\)"):
        build_transformer("sasrec", FUSED, N_ITEMS, content=text_vectors(N_ITEMS - 1))
    bad = text_vectors()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        BERT4Rec(FUSED, N_ITEMS, content=bad)


def test_reset_items_zeroes_id_vectors_and_gives_the_mean_bias():
    model = BERT4Rec(FUSED, N_ITEMS, content=text_vectors())
    with torch.no_grad():
        model.head_bias.copy_(torch.arange(N_ITEMS + 1, dtype=torch.float32))
    reset_items(model, torch.tensor([2, 5]))
    assert not model.item_emb.weight[[2, 5]].any()
    others = [j for j in range(1, N_ITEMS + 1) if j not in (2, 5)]
    expected = torch.tensor(others, dtype=torch.float32).mean()
    torch.testing.assert_close(model.head_bias[[2, 5]], expected.expand(2))
    assert model.content is not None
    # what is left of a reset item is its text part
    torch.testing.assert_close(model.item_weights()[2], model.content.rows(3)[2])
    with pytest.raises(ValueError, match="item indices must be in 1..30"):
        reset_items(model, torch.tensor([0]))


# ------------------------------------------------------------------ cold-start oracle

ORACLE_ITEMS, THEMES, PER_THEME = 40, 8, 5
POPULAR, COLD = 1, 40  # COLD is never in the data; its text reads like POPULAR's (a sequel)


def oracle_texts() -> torch.Tensor:
    """(42, 16) text vectors: a one-hot theme (items 5t+1..5t+5) plus a small item-specific part."""
    g = torch.Generator().manual_seed(0)
    vectors = torch.zeros(ORACLE_ITEMS + 2, THEMES + 8)
    own = 0.3 * torch.randn(ORACLE_ITEMS + 1, 8, generator=g)
    for j in range(1, ORACLE_ITEMS + 1):
        vectors[j, (j - 1) // PER_THEME] = 1.0
        vectors[j, THEMES:] = own[j]
    vectors[COLD] = vectors[POPULAR] + 0.05 * torch.randn(THEMES + 8, generator=g)
    return F.normalize(vectors, dim=1)


def oracle_sessions() -> torch.Tensor:
    """(256, 4) sessions within one theme (never the last theme, which holds COLD); theme-0 sessions
    end with POPULAR."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(256):
        t = int(torch.randint(0, THEMES - 1, (1,), generator=g))
        items = [j for j in range(t * PER_THEME + 1, (t + 1) * PER_THEME + 1) if j != POPULAR]
        seq = [items[i] for i in torch.randperm(len(items), generator=g)][:4]
        rows.append(seq[:3] + [POPULAR] if t == 0 else seq)
    return torch.tensor(rows)


def train_oracle(cls: type[SequenceTransformer], fused: bool, steps: int = 60) -> SequenceTransformer:
    cfg = ModelConfig(max_len=6, hidden_size=16, num_layers=1, num_heads=2, dropout=0.0)
    cfg = cfg.model_copy(update={"content_fusion": fused, "content_dim": THEMES + 8, "id_dropout": 0.0})
    torch.manual_seed(0)
    model = cls(cfg, ORACLE_ITEMS, content=oracle_texts() if fused else None)
    sessions = oracle_sessions()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        if model.causal:
            inputs, labels = sessions[:, :-1], sessions[:, 1:]
        else:  # predict the last item at a [MASK]
            inputs, labels = sessions.clone(), torch.zeros_like(sessions)
            labels[:, -1], inputs[:, -1] = sessions[:, -1], ORACLE_ITEMS + 1
        loss = plain_full_loss(model, inputs, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def rank(model: SequenceTransformer, history: list[int], item: int) -> int:
    seq = torch.tensor([history + ([] if model.causal else [ORACLE_ITEMS + 1])])
    scores = model.predict(seq)[0]
    scores[[0, *history]] = -torch.inf
    return int((scores >= scores[item]).sum())  # ties count against the item


@pytest.mark.parametrize("cls", [BERT4Rec, SASRec])
def test_fused_model_ranks_a_never_seen_lookalike_of_a_popular_item_high(cls, one_thread):
    histories = [[2, 3, 4], [3, 2, 5], [4, 5]]  # theme-0 sessions: POPULAR comes next
    ranks = {}
    for fused in (False, True):
        model = train_oracle(cls, fused)
        assert [rank(model, h, POPULAR) for h in histories] == [1, 1, 1]
        as_trained = [rank(model, h, COLD) for h in histories]
        reset_items(model, torch.tensor([COLD]))
        ranks[fused] = (as_trained, [rank(model, h, COLD) for h in histories])
    (id_trained, id_new), (fused_trained, fused_new) = ranks[False], ranks[True]
    # as a new item (ID part reset), the fused model puts it right after POPULAR; ID-only cannot
    assert max(fused_new) <= 2 and min(id_new) >= 10, ranks
    # even as trained (where the softmax pushed the never-positive item down) fused ranks it better
    assert all(f < i for f, i in zip(fused_trained, id_trained, strict=True)), ranks


def test_id_dropout_drops_id_parts_of_items_with_text_in_training_only():
    vectors = text_vectors()
    vectors[7] = 0.0  # an item without text keeps its ID embedding
    model = BERT4Rec(FUSED.model_copy(update={"id_dropout": 0.5}), N_ITEMS, content=vectors)
    model.eval()
    assert model.id_keep() is None
    model.train()
    torch.manual_seed(0)
    keeps = torch.stack([model.id_keep() for _ in range(400)])  # type: ignore[misc]
    assert keeps[:, [0, 7, N_ITEMS + 1]].eq(1).all()  # PAD, no text, MASK
    share = 1 - keeps[:, 1 : N_ITEMS + 1].mean().item() * N_ITEMS / (N_ITEMS - 1)
    assert 0.45 < share < 0.55
    # a dropped item's output vector is its text part alone
    keep = torch.ones(N_ITEMS + 2)
    keep[3] = 0
    assert model.content is not None
    torch.testing.assert_close(model.item_weights(keep)[3], model.content.rows(4)[3])
    torch.testing.assert_close(model.item_weights(keep)[4], model.item_weights()[4])
    unfused = BERT4Rec(CFG.model_copy(update={"id_dropout": 0.5}), N_ITEMS).train()
    assert unfused.id_keep() is None
