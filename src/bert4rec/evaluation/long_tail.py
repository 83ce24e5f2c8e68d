"""Long-tail breakdown: metrics per popularity bucket of the target item.

Items are sorted by training popularity (count, ties by item index); "head" = the top 20% of
catalogue items, the remaining items are split into two equal halves, "mid" (more popular) and
"tail" (less popular, including items never seen in training). Users are bucketed by the bucket of
their target.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bert4rec.evaluation.metrics import hit_rate, ndcg

HEAD_SHARE = 0.2  # share of catalogue items in the "head" bucket
BUCKETS = ("head", "mid", "tail")
LONG_TAIL_POLICY = (
    "items sorted by training count (ties by item index): head = top 20% of items, mid = next 40%, "
    "tail = last 40%; users bucketed by their target's bucket; full-ranking metrics"
)


def item_buckets(popularity: np.ndarray) -> np.ndarray:
    """(n_items + 1,) bucket of each item from its (n_items + 1,) training counts: 0 = head, 1 = mid,
    2 = tail (PAD gets -1)."""
    n = len(popularity) - 1
    order = np.argsort(-popularity[1:], kind="stable") + 1  # most popular first, ties by item index
    n_head = math.ceil(HEAD_SHARE * n)
    n_mid = (n - n_head + 1) // 2
    bucket = np.full(n + 1, -1, dtype=np.int64)
    bucket[order[:n_head]] = 0
    bucket[order[n_head : n_head + n_mid]] = 1
    bucket[order[n_head + n_mid :]] = 2
    return bucket


def long_tail_metrics(
    ranks: np.ndarray, targets: np.ndarray, popularity: np.ndarray
) -> dict[str, dict[str, Any]]:
    """hr@10 / ndcg@10 per bucket of the users' targets (None for an empty bucket), with the bucket's
    item count and share of training interactions. `ranks` and `targets` are per user."""
    bucket = item_buckets(popularity)
    total = max(int(popularity.sum()), 1)
    target_bucket = bucket[targets]
    out: dict[str, dict[str, Any]] = {}
    for b, name in enumerate(BUCKETS):
        r = ranks[target_bucket == b]
        items = bucket == b
        out[name] = {
            "n_users": int(len(r)),
            "hr@10": hit_rate(r, 10) if len(r) else None,
            "ndcg@10": ndcg(r, 10) if len(r) else None,
            "n_items": int(items.sum()),
            "share_of_train_interactions": float(popularity[items].sum()) / total,
        }
    return out
