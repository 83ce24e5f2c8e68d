"""One object per Transformer model type: what makes BERT4Rec BERT4Rec and SASRec SASRec on the data
side, as RecTools' data preparators do (the network is the shared backbone; its attention, causal
or not, is the network class's: `bert4rec.models.BERT4Rec`, `bert4rec.models.SASRec`).

A `SequenceKind` owns
- its training windows (`train_window`: max_len items, or max_len + 1 for SASRec's inputs plus
  next-item labels) and training batches (`train_collator`: Cloze masking, or shifting by one),
- its inference input (`inference_batch`: a [MASK] appended after the history, or the history as
  it is) and so how much history it sees (`max_history`); the prediction is read at the last
  position of that input in both (`read`).

`sequence_kind(model_type)` is the one lookup; training, scoring, the ONNX export, intent vectors
and the Recommender ask the kind instead of branching on the model type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from bert4rec.data.collate import BertCollator, NextItemCollator, inference_batch
from bert4rec.data.masking import ClozeConfig
from bert4rec.errors import ConfigError

if TYPE_CHECKING:
    from bert4rec.config import TrainConfig

# a training collator: a list of windows (user index, item index array) -> {"input_ids", "labels", "users"}
Collator = Callable[[Sequence[tuple[int, np.ndarray]]], dict[str, torch.Tensor]]


class SequenceKind:
    """The data side of one Transformer model type (see the module docstring). Stateless."""

    name: ClassVar[str]

    def train_window(self, max_len: int) -> int:
        """Items per training window."""
        raise NotImplementedError

    def train_collator(self, n_items: int, train: TrainConfig) -> Collator:
        """The training batch builder (train.seed seeds its random stream, if it has one)."""
        raise NotImplementedError

    def mask_idx(self, n_items: int) -> int | None:
        """The index appended after a history at inference, or None when nothing is appended."""
        raise NotImplementedError

    def max_history(self, max_len: int) -> int:
        """History items the model sees at inference; older ones are cut."""
        raise NotImplementedError

    def inference_batch(self, histories: Sequence[np.ndarray], max_len: int, n_items: int) -> torch.Tensor:
        """(B, L) left-padded input for scoring the next item after each history (L <= max_len)."""
        return inference_batch(histories, max_len, self.mask_idx(n_items))

    def inference_chunks(
        self, histories: Sequence[np.ndarray], max_len: int, n_items: int, chunk_size: int
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """(row indices into `histories`, (b, L) input) in chunks of at most `chunk_size` histories of
        similar length: each chunk is padded only to its own longest history instead of max_len (the
        same trick as the length-bucketed training batches)."""
        lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), chunk_size):
            idx = order[start : start + chunk_size]
            yield idx, self.inference_batch([histories[i] for i in idx], max_len, n_items)

    @staticmethod
    def read(hidden: torch.Tensor) -> torch.Tensor:
        """(B, L, D) hidden states of an `inference_batch` -> (B, D) at the position that predicts the
        next item: the last one (BERT4Rec's appended [MASK], SASRec's most recent item)."""
        return hidden[:, -1]


class ClozeKind(SequenceKind):
    """BERT4Rec: Cloze-masked training windows of max_len items, and a [MASK] appended after the last
    max_len - 1 history items at inference."""

    name = "bert4rec"

    def train_window(self, max_len: int) -> int:
        return max_len

    def train_collator(self, n_items: int, train: TrainConfig) -> Collator:
        cloze = ClozeConfig(
            n_items,
            train.mask_prob,
            train.mask_token_prob,
            train.random_token_prob,
            train.last_item_mask_prob,
        )
        return BertCollator(cloze, seed=train.seed)

    def mask_idx(self, n_items: int) -> int | None:
        return n_items + 1

    def max_history(self, max_len: int) -> int:
        return max_len - 1  # one slot for the appended [MASK]


class NextItemKind(SequenceKind):
    """SASRec: windows of max_len + 1 items (inputs and next-item labels), and the last max_len
    history items as they are at inference."""

    name = "sasrec"

    def train_window(self, max_len: int) -> int:
        return max_len + 1

    def train_collator(self, n_items: int, train: TrainConfig) -> Collator:
        return NextItemCollator(n_items, train.input_mask_prob, seed=train.seed)

    def mask_idx(self, n_items: int) -> int | None:
        return None

    def max_history(self, max_len: int) -> int:
        return max_len


CLOZE = ClozeKind()
NEXT_ITEM = NextItemKind()
# the registry: one kind per name of bert4rec.config.TRANSFORMER_TYPES
SEQUENCE_KINDS: dict[str, SequenceKind] = {kind.name: kind for kind in (CLOZE, NEXT_ITEM)}


def sequence_kind(model_type: str) -> SequenceKind:
    """The kind of a Transformer model type (`cfg.model_type`, or a network's `model_type`)."""
    if model_type not in SEQUENCE_KINDS:
        raise ConfigError(
            f"not a Transformer model type: {model_type!r} (expected one of {', '.join(SEQUENCE_KINDS)})"
        )
    return SEQUENCE_KINDS[model_type]
