"""Sampled softmax with logQ correction, for catalogs too large for a full softmax per step.

The full loss scores every labelled position against all items: an (N, n_items + 1) logit matrix
and the same-sized gradient, which dominates step time and memory once the catalog has 10^5 items.
The sampled loss instead draws K negatives per batch (one set shared by all positions, so scoring is
one (N, D) x (D, K) matmul) and scores each position against [its target, the K negatives].

The negatives come from a proposal distribution p (training popularity or uniform), so popular items
would be over-penalised; each negative's logit is therefore corrected by subtracting log Q(j), with
Q(j) = K * p(j) the expected number of times item j is drawn (Bengio & Senecal 2008; Yi et al. 2019,
"Sampling-bias-corrected neural modeling"). Then sum_k exp(s_jk - log Q(jk)) is an unbiased estimate
of the sum of exp(s_j) over all items, and the loss tends to the full softmax loss as K grows. The
target is part of every candidate set with certainty, so its logit is not corrected. A negative that
equals the position's target (an "accidental hit") is masked out (-inf).

Tensors only: the proposal probabilities are computed from the training data by the caller
(`training.fit.make_negative_sampler`); `training.losses.sampled_loss` applies it to a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class SampledNegatives:
    """One batch's shared negatives: `items` (K,) item indices in 1..n_items and `log_q` (K,) the log
    of each one's expected count in the sample, log(K * p(item))."""

    items: torch.Tensor
    log_q: torch.Tensor

    def to(self, device: torch.device | str) -> SampledNegatives:
        return SampledNegatives(self.items.to(device), self.log_q.to(device))


class NegativeSampler:
    """Draws `n_negatives` items per batch, with replacement, from `probs` ((n_items + 1,), index 0 =
    PAD must be 0; it is normalised here). Deterministic for a seed; the generator lives on the CPU
    (drawing is cheap next to a step) and pickles with its state, for ddp_spawn."""

    def __init__(self, probs: torch.Tensor, n_negatives: int, seed: int = 0) -> None:
        probs = torch.as_tensor(probs, dtype=torch.float64).cpu()
        if probs.ndim != 1 or len(probs) < 2:
            raise ValueError("probs must be a 1-d tensor over PAD + items, shape (n_items + 1,)")
        if probs[0] != 0 or (probs < 0).any() or probs.sum() <= 0:
            raise ValueError("probs must be >= 0 with probs[0] (PAD) == 0 and a positive sum")
        if n_negatives < 1:
            raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
        self.probs = probs / probs.sum()  # (n_items + 1,)
        self.n_negatives = n_negatives
        # log of the expected count of each item among the K draws; -inf for items never drawn
        self.log_q = torch.log(self.probs * n_negatives).float()  # (n_items + 1,)
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_counts(
        cls, counts: torch.Tensor, n_negatives: int, distribution: str = "popularity", seed: int = 0
    ) -> NegativeSampler:
        """From training interaction counts ((n_items + 1,), PAD first): `popularity` samples in
        proportion to the counts, `uniform` every item 1..n_items alike."""
        counts = torch.as_tensor(counts, dtype=torch.float64)
        if distribution == "uniform":
            probs = torch.ones_like(counts)
        elif distribution == "popularity":
            probs = counts.clone()
        else:
            raise ValueError(
                f"unknown negative sampling distribution {distribution!r}: uniform or popularity"
            )
        probs[0] = 0.0
        return cls(probs, n_negatives, seed)

    def sample(self, device: torch.device | str = "cpu") -> SampledNegatives:
        items = torch.multinomial(self.probs, self.n_negatives, replacement=True, generator=self.generator)
        return SampledNegatives(items, self.log_q[items]).to(device)

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["generator"] = self.generator.get_state()
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        generator = torch.Generator()
        generator.set_state(state.pop("generator"))  # type: ignore[arg-type]
        self.__dict__.update(state)
        self.generator = generator


def sampled_softmax_logits(
    target_logits: torch.Tensor,
    negative_logits: torch.Tensor,
    targets: torch.Tensor,
    negatives: SampledNegatives,
) -> torch.Tensor:
    """Corrected candidate logits, target first: (N,) target logits, (N, K) raw negative logits,
    (N,) target items -> (N, 1 + K), negatives minus log Q and accidental hits set to -inf."""
    corrected = negative_logits - negatives.log_q[None, :]  # (N, K)
    hits = negatives.items[None, :] == targets[:, None]  # (N, K)
    corrected = corrected.masked_fill(hits, float("-inf"))
    return torch.cat([target_logits[:, None], corrected], dim=1)


def sampled_softmax_loss(logits: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of (N, 1 + K) candidate logits whose column 0 is the target.
    `label_smoothing` s trains towards (1 - s) on the target and s spread evenly over the row's
    candidates (its masked accidental hits left out: they are the target itself)."""
    if not label_smoothing:
        zeros = torch.zeros(logits.size(0), dtype=torch.int64, device=logits.device)
        return F.cross_entropy(logits, zeros)
    log_p = F.log_softmax(logits, dim=1)
    candidates = torch.isfinite(logits)
    spread = log_p.masked_fill(~candidates, 0.0).sum(1) / candidates.sum(1)
    return -((1.0 - label_smoothing) * log_p[:, 0] + label_smoothing * spread).mean()
