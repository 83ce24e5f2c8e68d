import numpy as np
import pytest
import torch

from bert4rec.data.collate import BertCollator, NextItemCollator, inference_batch, left_pad
from bert4rec.data.masking import ClozeConfig


def test_left_pad_keeps_the_most_recent_items():
    out = left_pad([np.array([1, 2, 3]), np.array([7])], length=2)
    assert out.tolist() == [[2, 3], [0, 7]]


def test_bert_collator_pads_to_the_longest_in_batch():
    batch = [(0, np.array([1, 2, 3])), (1, np.array([4, 5]))]
    out = BertCollator(ClozeConfig(10, mask_prob=0.5), seed=0)(batch)
    assert out["input_ids"].shape == (2, 3) and out["users"].tolist() == [0, 1]
    assert out["input_ids"][1, 0] == 0 and out["labels"][1, 0] == 0


def test_next_item_collator_shifts_targets():
    out = NextItemCollator()([(0, np.array([1, 2, 3, 4])), (1, np.array([5, 6]))])
    assert out["input_ids"].tolist() == [[1, 2, 3], [0, 0, 5]]
    assert out["labels"].tolist() == [[2, 3, 4], [0, 0, 6]]


@pytest.mark.parametrize(
    ("mask_idx", "expected"), [(99, [[2, 3, 4, 99], [0, 0, 7, 99]]), (None, [[2, 3, 4], [0, 0, 7]])]
)
def test_inference_batch_appends_mask_for_bert_only(mask_idx, expected):
    hist = [np.array([1, 2, 3, 4]), np.array([7])]
    out = inference_batch(hist, max_len=4 if mask_idx else 3, mask_idx=mask_idx)
    assert out.tolist() == expected


def test_bert_collator_pickles_with_its_random_stream():
    """Spawned processes (ddp_spawn, DataLoader workers) receive the collator pickled."""
    import pickle

    collator = BertCollator(ClozeConfig(50, mask_prob=0.5), seed=3)
    batch = [(0, np.arange(1, 21)), (1, np.arange(5, 15))]
    collator(batch)  # advance the stream
    copy = pickle.loads(pickle.dumps(collator))
    a, b = collator(batch), copy(batch)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])


def test_next_item_collator_input_masking_hides_inputs_only():
    """SASRec's item-mask augmentation: some inputs become [MASK] (n_items + 1), never padding, and
    the next-item labels are those of the unmasked windows."""
    batch = [(0, np.arange(1, 41)), (1, np.arange(3, 13))]
    plain = NextItemCollator()(batch)
    out = NextItemCollator(n_items=50, input_mask_prob=0.3, seed=1)(batch)
    assert torch.equal(out["labels"], plain["labels"])
    hidden = out["input_ids"] != plain["input_ids"]
    assert (out["input_ids"][hidden] == 51).all()
    assert not hidden[plain["input_ids"] == 0].any()
    share = hidden.sum().item() / (plain["input_ids"] != 0).sum().item()
    assert 0.1 < share < 0.5


def test_next_item_collator_pickles_with_its_random_stream():
    import pickle

    collator = NextItemCollator(n_items=50, input_mask_prob=0.3, seed=3)
    batch = [(0, np.arange(1, 31))]
    collator(batch)
    copy = pickle.loads(pickle.dumps(collator))
    assert torch.equal(collator(batch)["input_ids"], copy(batch)["input_ids"])
    with pytest.raises(ValueError, match="n_items"):
        NextItemCollator(input_mask_prob=0.1)
