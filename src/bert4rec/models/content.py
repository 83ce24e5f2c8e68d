"""Content fusion: fixed item text vectors (e.g. MiniLM of title + metadata) added to the item embeddings.

A fused item vector is `ID embedding + W @ text vector`. Items with similar text share part of their
representation, so an item with few or no training interactions still gets a useful vector from its
text alone. The text vectors are computed outside the model (`bert4rec.text`) and
handed in as a tensor; they are a buffer (saved with the weights, so a bundle never needs the text
encoder to be rebuilt, and never trained); only the projection `W` is learned.
"""

from __future__ import annotations

import torch
from torch import nn


class ContentFusion(nn.Module):
    """(n_items + 2, C) fixed text vectors -> (.., D) through a trainable bias-free Linear.

    Row j holds item index j; the PAD row (0) and the MASK row (last) are always zero, as are the rows
    of items without text. Without a bias a zero text vector adds exactly nothing.
    """

    vectors: torch.Tensor  # registered buffer, (n_items + 2, C)

    def __init__(self, n_rows: int, content_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.register_buffer("vectors", torch.zeros(n_rows, content_dim))
        self.proj = nn.Linear(content_dim, hidden_size, bias=False)

    @torch.no_grad()
    def set_vectors(self, vectors: torch.Tensor) -> None:
        """Copy in the text vectors (n_items + 2, C); the PAD and MASK rows are zeroed."""
        expected = tuple(self.vectors.shape)
        if tuple(vectors.shape) != expected:
            raise ValueError(
                f"content vectors have shape {tuple(vectors.shape)}, expected {expected} "
                "(n_items + 2 rows: PAD, items 1..n_items, MASK; model.content_dim columns)"
            )
        if not torch.isfinite(vectors).all():
            raise ValueError("content vectors contain NaN or infinite values")
        self.vectors.copy_(vectors)
        self.vectors[0] = 0.0
        self.vectors[-1] = 0.0

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(...) item indices -> (..., D) projected text vectors."""
        return self.proj(self.vectors[idx])

    def rows(self, stop: int) -> torch.Tensor:
        """(stop, D) projected text vectors of item indices 0 .. stop - 1."""
        return self.proj(self.vectors[:stop])
