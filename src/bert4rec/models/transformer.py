"""The Transformer backbone shared by BERT4Rec (bidirectional) and SASRec (causal).

Reads top to bottom: attention -> block -> model. The model takes and returns tensors only.
Item indices: PAD = 0, items 1..n_items, MASK = n_items + 1. Sequences are LEFT-padded, so the
most recent item (or the appended [MASK]) is always the last position; positions are numbered
from the right end of a `max_len` window so that a batch padded to a shorter length gives every
item the same position embedding it would get at full length.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bert4rec.config import ModelConfig
from bert4rec.models.content import ContentFusion


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.attn_dropout = cfg.attention_dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        # (B, L, D) -> (B, H, L, D/H)
        q, k, v = (t.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        # fused kernel; attention dropout is off by default because its random mask is expensive on CPU
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(B, L, D)
        return self.resid_dropout(self.proj(y))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.hidden_size, cfg.ffn_multiplier * cfg.hidden_size)
        self.out = nn.Linear(cfg.ffn_multiplier * cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.out(F.gelu(self.fc(x))))


class SwiGLUFeedForward(nn.Module):
    """Gated feed-forward (SwiGLU, Shazeer 2020): silu(x W_gate) * (x W_up), then W_out; no biases.
    Gate and up projections are one matmul."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        inner = cfg.ffn_multiplier * cfg.hidden_size
        self.gate_up = nn.Linear(cfg.hidden_size, 2 * inner, bias=False)
        self.out = nn.Linear(inner, cfg.hidden_size, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.dropout(self.out(F.silu(gate) * up))


class Block(nn.Module):
    """Pre-LayerNorm Transformer block (more stable at higher learning rates than post-LN).

    `cfg.block == "ligr"` makes it the LiGR block of eSASRec: the attention and feed-forward outputs
    are each multiplied by sigmoid(x W + b) of the stream entering that sub-layer before they are
    added to it, and the feed-forward is SwiGLU.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        gated = cfg.block == "ligr"
        self.ln1 = nn.LayerNorm(cfg.hidden_size)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.hidden_size)
        self.ffn = SwiGLUFeedForward(cfg) if gated else FeedForward(cfg)
        self.attn_gate = nn.Linear(cfg.hidden_size, cfg.hidden_size) if gated else None
        self.ffn_gate = nn.Linear(cfg.hidden_size, cfg.hidden_size) if gated else None

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        if self.attn_gate is None or self.ffn_gate is None:
            x = x + self.attn(self.ln1(x), attn_mask)
            return x + self.ffn(self.ln2(x))
        x = x + torch.sigmoid(self.attn_gate(x)) * self.attn(self.ln1(x), attn_mask)
        return x + torch.sigmoid(self.ffn_gate(x)) * self.ffn(self.ln2(x))


class SequenceTransformer(nn.Module):
    """Item + position embeddings -> Transformer blocks -> scores over all items.

    `causal=False` gives BERT4Rec's bidirectional encoder, `causal=True` SASRec's left-to-right one;
    a subclass per model type fixes it and names its `model_type` (the name of its data side,
    `bert4rec.data.kinds.sequence_kind`: training windows and batches, inference input).
    With `cfg.content_fusion` every item vector (input embedding and, when tied, output vector) is
    the ID embedding plus a learned projection of the item's fixed text vector (`content`, shape
    (n_items + 2, cfg.content_dim), computed outside the model); see `bert4rec.models.content`.
    """

    model_type: ClassVar[str]

    def __init__(
        self,
        cfg: ModelConfig,
        n_items: int,
        n_users: int = 0,
        causal: bool = False,
        content: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.cfg, self.n_items, self.causal = cfg, n_items, causal
        D = cfg.hidden_size
        self.item_emb = nn.Embedding(n_items + 2, D, padding_idx=0)  # PAD, items, MASK
        self.pos_emb = nn.Embedding(cfg.max_len, D)
        self.user_emb = nn.Embedding(max(n_users, 1), D) if cfg.use_user_embedding else None
        self.emb_norm = nn.LayerNorm(D)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.ln_f = nn.LayerNorm(D)
        # output over PAD + items (never MASK); column j scores item index j
        self.head = None if cfg.tie_weights else nn.Linear(D, n_items + 1, bias=False)
        self.head_bias = nn.Parameter(torch.zeros(n_items + 1))
        self.apply(self._init_weights)
        # built after the rest is initialised, so a fused model draws every shared parameter exactly
        # like the ID-only model with the same seed; None adds no state (ID-only checkpoints load)
        self.content = ContentFusion(n_items + 2, cfg.content_dim, D) if cfg.content_fusion else None
        if self.content is not None:
            self.content.apply(self._init_weights)
        if content is not None:
            if self.content is None:
                raise ValueError("content vectors were given but model.content_fusion is off")
            self.content.set_vectors(content)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    def _attention_mask(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, 1, L, L) bool, True = may attend. Padded keys are hidden; a padded query still sees itself
        so that no row is all-False (which would give NaN)."""
        L = seq.size(1)
        keys = (seq != 0)[:, None, None, :]  # (B, 1, 1, L)
        eye = torch.eye(L, dtype=torch.bool, device=seq.device)
        mask = keys | eye
        if self.causal:
            mask = mask & torch.tril(torch.ones(L, L, dtype=torch.bool, device=seq.device))
        return mask

    def id_keep(self) -> torch.Tensor | None:
        """Training with content fusion and `cfg.id_dropout`: a fresh (n_items + 2,) 0/1 mask over item
        indices, 0 = this step drops the item's ID embedding (input and output alike), so the item is
        its text part alone, as an item added after training is. Items without text, PAD and MASK
        always keep theirs. None (keep every ID) in eval mode or without fusion."""
        if not self.training or self.content is None or self.cfg.id_dropout <= 0:
            return None
        vectors = self.content.vectors
        drop = torch.rand(vectors.shape[0], device=vectors.device) < self.cfg.id_dropout
        drop &= vectors.abs().sum(dim=1) > 0  # PAD, MASK and items without text have a zero vector
        return (~drop).to(self.item_emb.weight.dtype)

    def forward(
        self, seq: torch.Tensor, users: torch.Tensor | None = None, id_keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, L) item indices -> (B, L, D) hidden states: the one entry point. Scores are
        `logits(hidden)` (`predict` for the next item); the training losses
        (`bert4rec.training.losses`) take the hidden states of the labelled positions.
        `users`: (B,) user indices for `model.use_user_embedding` (-1: none); `id_keep`: see `id_keep()`."""
        L = seq.size(1)
        if self.cfg.max_len < L:
            raise ValueError(f"sequence length {L} exceeds max_len {self.cfg.max_len}")
        pos = torch.arange(self.cfg.max_len - L, self.cfg.max_len, device=seq.device)
        x = self.item_emb(seq)  # (B, L, D)
        if id_keep is not None:
            x = x * id_keep[seq].unsqueeze(-1)
        if self.content is not None:
            x = x + self.content(seq)
        x = x + self.pos_emb(pos)[None]
        if self.user_emb is not None and users is not None:
            # a negative user (the guest marker -1 of ad-hoc sessions) gets no user vector at all,
            # not the clamped index's: (B, D) vectors zeroed where users < 0
            known = (users >= 0).unsqueeze(-1).to(x.dtype)  # (B, 1)
            x = x + (self.user_emb(users.clamp(min=0)) * known)[:, None, :]
        x = self.drop(self.emb_norm(x))
        mask = self._attention_mask(seq)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)

    def item_weights(self, id_keep: torch.Tensor | None = None) -> torch.Tensor:
        """(n_items + 1, D) output item vectors (tied: the input item vectors without the MASK row,
        including the text part when fused; an untied head has no text part)."""
        if self.head is not None:
            return self.head.weight
        weights = self.item_emb.weight[: self.n_items + 1]
        if id_keep is not None:
            weights = weights * id_keep[: self.n_items + 1, None]
        if self.content is not None:
            weights = weights + self.content.rows(self.n_items + 1)
        return weights

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., n_items + 1)."""
        return hidden @ self.item_weights().T + self.head_bias

    def item_vectors(self, item_idx: torch.Tensor, id_keep: torch.Tensor | None = None) -> torch.Tensor:
        """(...,) item indices -> (..., D): the rows `item_weights()[item_idx]` without building all
        n_items + 1 of them (which the sampled loss would otherwise pay for at every step)."""
        if self.head is not None:
            return self.head.weight[item_idx]
        vectors = self.item_emb(item_idx)
        if id_keep is not None:
            vectors = vectors * id_keep[item_idx].unsqueeze(-1)
        if self.content is not None:
            vectors = vectors + self.content(item_idx)
        return vectors

    @torch.no_grad()
    def predict(self, seq: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) -> (B, n_items + 1) scores of the item after each input, read at its last position
        (BERT4Rec's appended [MASK], SASRec's most recent item; see `bert4rec.data.kinds`)."""
        return self.logits(self(seq, users)[:, -1])

    @torch.no_grad()
    def init_output_bias(self, counts: torch.Tensor) -> None:
        """Start the output bias at the log-popularity of the training items, so that an untrained
        model (whose item vectors are near zero) already ranks like the popularity baseline instead
        of uniformly, and training starts from there (train.output_bias_init).

        `counts`: (n_items + 1,) training interaction counts, index 0 = PAD. Bias j becomes
        log((counts[j] + 1) / (sum(counts) + n_items + 1)): add-one smoothing gives an item without
        training interactions a finite bias below every seen item's; PAD gets that floor too.
        The bias is the one `logits`, the training losses (full and sampled) and every scorer/export read.
        """
        counts = torch.as_tensor(counts, dtype=torch.float64).reshape(-1)
        if counts.numel() != self.n_items + 1:
            raise ValueError(
                f"counts must have n_items + 1 = {self.n_items + 1} entries, got {counts.numel()}"
            )
        if bool((counts < 0).any()):
            raise ValueError("counts must be non-negative")
        counts = counts.clone()
        counts[0] = 0.0
        log_p = torch.log((counts + 1.0) / (counts.sum() + counts.numel()))
        self.head_bias.copy_(log_p.to(self.head_bias.dtype))

    @torch.no_grad()
    def init_item_embeddings(self, vectors: torch.Tensor) -> None:
        """Start the item ID embeddings (rows 1..n_items) at `vectors` ((n_items + 1, D), row 0 =
        PAD ignored; e.g. matrix-factorisation item factors, train.item_embedding_init), scaled so
        their spread (standard deviation) equals that of the random rows they replace: only the
        geometry changes, not the scale training starts at. PAD stays zero, MASK stays random."""
        vectors = torch.as_tensor(vectors, dtype=torch.float64)
        expected = (self.n_items + 1, self.cfg.hidden_size)
        if tuple(vectors.shape) != expected:
            raise ValueError(
                f"vectors must have shape (n_items + 1, hidden_size) = {expected}, got {tuple(vectors.shape)}"
            )
        if not bool(torch.isfinite(vectors).all()):
            raise ValueError("vectors must be finite")
        rows = vectors[1:]
        spread = float(rows.std())
        if spread == 0.0:
            raise ValueError("vectors are all equal: they carry no item geometry")
        weight = self.item_emb.weight
        scale = float(weight[1 : self.n_items + 1].double().std()) / spread
        weight[1 : self.n_items + 1] = (rows * scale).to(weight.dtype)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
