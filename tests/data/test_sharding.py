import numpy as np
import pytest

from bert4rec.data.samplers import LengthBucketSampler
from bert4rec.data.sharding import ShardedBatchSampler, distributed_rank


def _lengths(n: int = 103) -> np.ndarray:
    return np.random.default_rng(0).integers(1, 30, size=n)


@pytest.mark.parametrize("world", [2, 3])
def test_shards_are_disjoint_equal_and_cover_every_batch(world):
    inner = LengthBucketSampler(_lengths(), batch_size=8, seed=1, pool_batches=2)
    batches = [tuple(b) for b in LengthBucketSampler(_lengths(), batch_size=8, seed=1, pool_batches=2)]
    shards = []
    for rank in range(world):
        inner.set_epoch(0)
        shards.append([tuple(b) for b in ShardedBatchSampler(inner, world, rank=rank)])
    # every process runs the same number of steps (a gradient all-reduce waits for all of them)
    assert {len(s) for s in shards} == {len(ShardedBatchSampler(inner, world))} == {-(-len(batches) // world)}
    seen = [b for s in shards for b in s]
    assert set(seen) == set(batches)  # together they cover the epoch ...
    pad = len(seen) - len(batches)
    assert 0 <= pad < world and seen.count(batches[0]) == 1 + (pad > 0)  # ... padded with the first batches


def test_set_epoch_is_passed_on_and_changes_the_order():
    inner = LengthBucketSampler(_lengths(), batch_size=8, seed=1)
    sharded = ShardedBatchSampler(inner, 2, rank=0)
    sharded.set_epoch(0)
    first = list(sharded)
    sharded.set_epoch(0)
    assert list(sharded) == first  # deterministic for (seed, epoch): every rank sees the same list
    sharded.set_epoch(1)
    assert list(sharded) != first


def test_without_a_process_group_it_is_rank_zero_and_checks_arguments():
    assert distributed_rank() == (0, 1)
    inner = LengthBucketSampler(_lengths(), batch_size=8, seed=1)
    inner.set_epoch(0)
    expected = list(ShardedBatchSampler(inner, 2, rank=0))
    inner.set_epoch(0)
    assert list(ShardedBatchSampler(inner, 2)) == expected  # rank read lazily: 0 outside DDP
    with pytest.raises(ValueError, match="num_replicas"):
        ShardedBatchSampler(inner, 0)
    with pytest.raises(ValueError, match="rank"):
        ShardedBatchSampler(inner, 2, rank=2)
