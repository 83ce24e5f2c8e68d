"""Split a batch sampler's batches between data-parallel processes (Lightning DDP).

Lightning injects a `DistributedSampler` only into plain samplers; it cannot shard a custom
`batch_sampler` such as `LengthBucketSampler`. `ShardedBatchSampler` does it instead: every process
builds the same list of batches (same seed, same epoch) and takes every `num_replicas`-th one, so
the processes see disjoint batches that together cover the epoch, each still made of windows of
similar length. All processes must run the same number of steps (a gradient all-reduce waits for
every process), so the list is padded with its first batches up to a multiple of `num_replicas`,
as `DistributedSampler` pads samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from torch.utils.data import Sampler


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of this process in the initialised torch.distributed group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardedBatchSampler(Sampler[list[int]]):
    """This process's share of the batches of `batches` (any batch sampler with a fixed order per epoch).

    `num_replicas` is the number of processes; `rank` defaults to this process's rank in the
    torch.distributed group, read when iterating (Lightning creates the group inside `fit`, after
    the data loader was built). `set_epoch` is passed on, so each epoch gets a new order.
    """

    def __init__(self, batches: Any, num_replicas: int, rank: int | None = None) -> None:
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if rank is not None and not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.batches = batches
        self.num_replicas = num_replicas
        self.rank = rank

    def __len__(self) -> int:
        return math.ceil(len(self.batches) / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch; the inner sampler's order depends on it."""
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def _rank(self) -> int:
        if self.rank is not None:
            return self.rank
        rank, world = distributed_rank()
        if world not in (1, self.num_replicas):
            raise RuntimeError(
                f"ShardedBatchSampler was built for {self.num_replicas} processes but the process group "
                f"has {world}"
            )
        return rank

    def __iter__(self) -> Iterator[list[int]]:
        rank = self._rank()
        batches = list(self.batches)
        if not batches:
            return
        total = len(self) * self.num_replicas
        padded = (batches * math.ceil(total / len(batches)))[:total]
        yield from padded[rank :: self.num_replicas]
