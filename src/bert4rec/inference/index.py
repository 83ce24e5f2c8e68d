"""Exact cosine-similarity search over a fixed matrix of item vectors.

Row j holds item index j (row 0 is PAD and stays zero). An approximate index would implement the
same `scores` method; at MovieLens scale (a few thousand items) one matrix-vector product is
already well under a millisecond.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ExactIndex:
    """Cosine similarity of a query vector against every item vector."""

    def __init__(self, vectors: torch.Tensor) -> None:
        # normalise once; a zero row (PAD, items without text) stays zero and scores 0
        self.vectors = F.normalize(vectors.detach().float().cpu(), dim=1)  # (n_items + 1, D)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def scores(self, query: torch.Tensor) -> torch.Tensor:
        """(D,) query -> (n_items + 1,) cosine similarities."""
        return self.vectors @ F.normalize(query.detach().float().reshape(-1), dim=0)

    def similar(self, idx: int) -> torch.Tensor:
        """(n_items + 1,) cosine similarities to item index `idx` (itself included, scoring 1)."""
        return self.vectors @ self.vectors[idx]
