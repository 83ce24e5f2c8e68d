import numpy as np
import torch

from bert4rec.config import ModelConfig
from bert4rec.evaluation.scoring import TransformerScorer
from bert4rec.models import BERT4Rec, SASRec


def test_length_sorted_chunks_give_the_same_scores_as_one_padded_batch():
    """Positions are counted from the right, so padding a history less must not change its scores."""
    torch.manual_seed(0)
    cfg = ModelConfig(max_len=12, hidden_size=16, num_layers=1, num_heads=2)
    rng = np.random.default_rng(0)
    histories = [rng.integers(1, 31, size=n) for n in (1, 11, 3, 25, 7, 2, 12)]
    users = np.arange(len(histories))
    for model in (BERT4Rec(cfg, n_items=30), SASRec(cfg, n_items=30)):
        model.eval()
        chunked = TransformerScorer(model, chunk_size=2).score(users, histories)
        one_batch = TransformerScorer(model, chunk_size=1000).score(users, histories)
        single = torch.cat(
            [TransformerScorer(model).score(users[i : i + 1], [h]) for i, h in enumerate(histories)]
        )
        assert chunked.shape == (len(histories), 31)
        torch.testing.assert_close(chunked, one_batch, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(chunked, single, rtol=1e-4, atol=1e-5)
