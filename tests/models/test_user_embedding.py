"""model.use_user_embedding: trained users add their vector; guests (user -1) add none."""

from __future__ import annotations

import numpy as np
import torch

from bert4rec.config import ModelConfig
from bert4rec.evaluation.scoring import TransformerScorer
from bert4rec.models import BERT4Rec, SASRec

CFG = ModelConfig(max_len=12, hidden_size=16, num_layers=1, num_heads=2, dropout=0.0, use_user_embedding=True)


def _with_distinct_user_vectors(model):  # type: ignore[no-untyped-def]
    with torch.no_grad():
        model.user_emb.weight.normal_(0.0, 1.0)  # large enough to move every score
    return model.eval()


def test_a_guest_gets_no_user_vector_and_not_user_zeros():
    for cls in (BERT4Rec, SASRec):
        model = _with_distinct_user_vectors(cls(CFG, n_items=30, n_users=5))
        seq = torch.tensor([[3, 4, 5, 31], [3, 4, 5, 31]])
        guest = model.predict(seq, torch.tensor([-1, -1]))
        no_user = model.predict(seq)
        user0 = model.predict(seq, torch.tensor([0, 0]))
        torch.testing.assert_close(guest, no_user)
        assert not torch.allclose(guest, user0, atol=1e-3), cls.__name__


def test_guests_and_users_mixed_in_one_batch():
    model = _with_distinct_user_vectors(BERT4Rec(CFG, n_items=30, n_users=5))
    seq = torch.tensor([[3, 4, 5, 31], [3, 4, 5, 31]])
    mixed = model.predict(seq, torch.tensor([-1, 2]))
    torch.testing.assert_close(mixed[0], model.predict(seq[:1])[0])
    torch.testing.assert_close(mixed[1], model.predict(seq[1:], torch.tensor([2]))[0])


def test_scorer_scores_a_guest_session_without_a_user_vector():
    model = _with_distinct_user_vectors(BERT4Rec(CFG, n_items=30, n_users=5))
    scorer = TransformerScorer(model)
    history = [np.array([3, 4, 5])]
    guest = scorer.score(np.array([-1]), history)
    assert not torch.allclose(guest, scorer.score(np.array([0]), history), atol=1e-3)
    torch.testing.assert_close(guest[0], model.predict(torch.tensor([[3, 4, 5, 31]]))[0])
