import numpy as np
import pytest
import torch

from bert4rec.data.masking import (
    BertCollator,
    ClozeConfig,
    LengthBucketSampler,
    NextItemCollator,
    WindowDataset,
    cloze_mask,
    inference_batch,
    left_pad,
    sliding_windows,
)


def test_sliding_windows_cover_recent_and_old_history():
    users, ends = sliding_windows(np.array([3, 10, 25, 1]), window=10, step=5)
    pairs = list(zip(users.tolist(), ends.tolist(), strict=True))
    # short sequences: one window; long ones: the most recent window first, then older ones
    assert pairs == [
        (0, 3),
        (1, 10),
        (2, 25),
        (2, 20),
        (2, 15),
        (2, 10),
    ]  # user 3 (1 item) has nothing to learn


@pytest.mark.parametrize(("max_per_user", "user2_ends"), [(1, [25]), (2, [25, 20]), (9, [25, 20, 15, 10])])
def test_sliding_windows_keep_only_the_most_recent_per_user(max_per_user, user2_ends):
    users, ends = sliding_windows(np.array([3, 10, 25, 1]), window=10, step=5, max_per_user=max_per_user)
    assert ends[users == 2].tolist() == user2_ends
    assert ends[users != 2].tolist() == [3, 10]  # users with one window keep it


def test_sliding_windows_cover_start_adds_the_oldest_items():
    lengths = np.array([3, 10, 24, 25])
    users, ends = sliding_windows(lengths, window=10, step=10)
    assert list(zip(users.tolist(), ends.tolist(), strict=True)) == [
        (0, 3),
        (1, 10),
        (2, 24),
        (2, 14),
        (3, 25),
        (3, 15),
    ]
    users, ends = sliding_windows(lengths, window=10, step=10, cover_start=True)
    # items 0-3 of user 2 and 0-4 of user 3 were in no window; now a window over items 0-9 holds them
    assert list(zip(users.tolist(), ends.tolist(), strict=True)) == [
        (0, 3),
        (1, 10),
        (2, 24),
        (2, 14),
        (2, 10),
        (3, 25),
        (3, 15),
        (3, 10),
    ]
    for u, n in enumerate(lengths):
        covered = set().union(*(range(max(0, e - 10), e) for e in ends[users == u].tolist()))
        assert covered == set(range(n))
    # the cap on recent windows wins
    _, ends = sliding_windows(lengths, window=10, step=10, max_per_user=2, cover_start=True)
    assert ends.tolist() == [3, 10, 24, 14, 25, 15]


def test_window_dataset_slices_at_most_window_items():
    seqs = [np.arange(1, 26)]
    ds = WindowDataset(seqs, window=10, step=5)
    assert [ds[i][1].tolist()[-1] for i in range(len(ds))] == [25, 20, 15, 10]
    assert all(len(ds[i][1]) == 10 for i in range(len(ds)))


def test_left_pad_keeps_the_most_recent_items():
    out = left_pad([np.array([1, 2, 3]), np.array([7])], length=2)
    assert out.tolist() == [[2, 3], [0, 7]]


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


def test_length_buckets_cover_every_window_once_and_cut_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 201, size=1000)
    sampler = LengthBucketSampler(lengths, batch_size=32, seed=1, pool_batches=10)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))  # each window exactly once
    assert all(1 <= len(b) <= 32 for b in batches)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    shuffled = np.array_split(rng.permutation(1000), len(batches))
    random_padded = sum(len(b) * lengths[b].max() for b in shuffled)
    assert padded < 0.7 * random_padded, (padded, random_padded, lengths.sum())
    # deterministic for (seed, epoch); a new epoch gives a new order
    again = LengthBucketSampler(lengths, batch_size=32, seed=1, pool_batches=10)
    assert list(again) == batches
    sampler.set_epoch(0)
    assert list(sampler) == batches
    assert list(sampler) != batches


def test_bert_collator_pickles_with_its_random_stream():
    """Spawned processes (ddp_spawn, DataLoader workers) receive the collator pickled."""
    import pickle

    collator = BertCollator(ClozeConfig(50, mask_prob=0.5), seed=3)
    batch = [(0, np.arange(1, 21)), (1, np.arange(5, 15))]
    collator(batch)  # advance the stream
    copy = pickle.loads(pickle.dumps(collator))
    a, b = collator(batch), copy(batch)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
