import numpy as np

from bert4rec.data.samplers import LengthBucketSampler


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
