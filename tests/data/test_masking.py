import torch

from bert4rec.data.masking import ClozeConfig, cloze_mask


def test_cloze_mask_statistics_and_invariants():
    n_items = 1000
    cfg = ClozeConfig(
        n_items, mask_prob=0.2, mask_token_prob=0.8, random_token_prob=0.1, last_item_mask_prob=0.0
    )
    seq = torch.randint(1, n_items + 1, (400, 50))
    seq[:, :10] = 0  # padding
    g = torch.Generator().manual_seed(0)
    inputs, labels = cloze_mask(seq, cfg, g)
    masked = labels > 0
    assert not masked[:, :10].any(), "padding is never a target"
    assert torch.equal(labels[masked], seq[masked]), "labels hold the original items"
    assert torch.equal(inputs[~masked], seq[~masked]), "unmasked positions are untouched"
    share = masked[:, 10:].float().mean().item()
    assert 0.18 < share < 0.23
    as_mask = (inputs[masked] == cfg.mask_idx).float().mean().item()
    unchanged = (inputs[masked] == seq[masked]).float().mean().item()
    assert 0.76 < as_mask < 0.84 and 0.07 < unchanged < 0.14
    assert inputs.max() <= cfg.mask_idx


def test_cloze_mask_is_deterministic_for_a_seed():
    cfg = ClozeConfig(50, mask_prob=0.3)
    seq = torch.randint(1, 51, (8, 12))
    a = cloze_mask(seq, cfg, torch.Generator().manual_seed(1))
    b = cloze_mask(seq, cfg, torch.Generator().manual_seed(1))
    c = cloze_mask(seq, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_every_row_gets_a_target_and_last_only_rows_mask_just_the_last_item():
    # mask_token_prob=0: ordinary masked positions never become [MASK], so a [MASK] marks a last-only row
    cfg = ClozeConfig(50, mask_prob=0.3, mask_token_prob=0.0, random_token_prob=0.0, last_item_mask_prob=0.5)
    seq = torch.randint(1, 51, (400, 6))
    inputs, labels = cloze_mask(seq, cfg, torch.Generator().manual_seed(3))
    assert (labels > 0).any(dim=1).all()
    last_only = inputs[:, -1] == cfg.mask_idx
    assert 0.42 < last_only.float().mean().item() < 0.58
    assert ((labels[last_only] > 0).sum(1) == 1).all(), "last-only rows have exactly one target"
    assert (inputs[:, :-1] != cfg.mask_idx).all()


def test_mask_token_prob_one_is_the_original_bert4rec_masking():
    # every picked position becomes [MASK]: no random items, no targets left visible in the input
    cfg = ClozeConfig(100, mask_prob=0.4, mask_token_prob=1.0, random_token_prob=0.0, last_item_mask_prob=0.1)
    seq = torch.randint(1, 101, (300, 20))
    inputs, labels = cloze_mask(seq, cfg, torch.Generator().manual_seed(4))
    masked = labels > 0
    assert masked.float().mean().item() > 0.3
    assert (inputs[masked] == cfg.mask_idx).all()
    assert torch.equal(inputs[~masked], seq[~masked])
