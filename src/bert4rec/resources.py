"""Memory bounds: refuse a configuration or a file that cannot fit before allocating anything.

`memory_budget()` is the memory a run may use: the RAM available now (the smaller of the
system's MemAvailable and the container's cgroup limit), or `$BERT4REC_MEMORY_LIMIT_GB` when set
(`off` disables every check). The estimates are lower bounds, so a refusal is never a false alarm
for a run that would have fitted; a run that passes can still run out of memory at its peak.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from bert4rec.config import TRANSFORMER_TYPES
from bert4rec.errors import Bert4RecError, ConfigError

if TYPE_CHECKING:
    from bert4rec.config import ExperimentConfig
    from bert4rec.data.sequences import SequenceSplit

ENV = "BERT4REC_MEMORY_LIMIT_GB"
GIB = 1 << 30
FLOAT_BYTES = 4
# weights + gradients + AdamW's two moments, per parameter (a moving average adds one more copy)
TRAINING_COPIES = 4


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 memory limit (containers), if there is one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def memory_budget() -> int | None:
    """Bytes a run may allocate: $BERT4REC_MEMORY_LIMIT_GB if set, else the available RAM;
    None when the check is off or the platform does not say."""
    env = os.environ.get(ENV, "").strip().lower()
    if env in ("off", "none", "0"):
        return None
    if env:
        try:
            gb = float(env)
        except ValueError:
            raise ConfigError(f"${ENV} must be a number of GiB or 'off', got {env[:40]!r}") from None
        if not gb > 0 or gb == float("inf"):
            raise ConfigError(f"${ENV} must be a positive number of GiB or 'off'")
        return int(gb * GIB)
    found = [m for m in (_meminfo_available(), _cgroup_available()) if m is not None]
    return min(found) if found else None


def gib(n: float) -> str:
    """`n` bytes as a short human string (GiB, or TiB/PiB for absurd sizes)."""
    for unit, size in (("PiB", 1 << 50), ("TiB", 1 << 40)):
        if n >= size:
            return f"{n / size:,.0f} {unit}"
    return f"{n / GIB:.2f} GiB"


def check_memory(
    needed: float,
    doing: str,
    *,
    what: str,
    advice: str = "reduce the sizes (model.max_len, model.hidden_size, train.batch_size)",
    error: type[Bert4RecError] = ConfigError,
) -> None:
    """Raise `error` when `needed` bytes exceed the memory budget, naming the estimate, the budget,
    what to do and the override."""
    budget = memory_budget()
    if budget is not None and needed > budget:
        raise error(
            f"{doing} needs at least {gib(needed)} for {what} but only {gib(budget)} is available; "
            f"{advice}, or set {ENV}=<GiB> (or off) to override the check"
        )


def config_parameters_lower_bound(cfg: ExperimentConfig, n_items: int = 0) -> int:
    """At least how many parameters `cfg.model` has, from sizes alone (no data, no allocation):
    item and position embeddings plus the four attention projections of every layer."""
    m = cfg.model
    return (n_items + 2 + m.max_len) * m.hidden_size + m.num_layers * 4 * m.hidden_size**2


def check_config_memory(cfg: ExperimentConfig) -> None:
    """Refuse a model whose parameters alone cannot be trained in the memory budget (ConfigError)."""
    if cfg.model_type not in TRANSFORMER_TYPES:
        return
    n_items = cfg.data.n_items if cfg.data.dataset == "generated" else 0
    params = config_parameters_lower_bound(cfg, n_items)
    copies = TRAINING_COPIES + (1 if cfg.train.ema_decay else 0)
    m = cfg.model
    # name the size that dominates: the position table (max_len x hidden) or the square layers
    field = "max_len" if m.max_len >= 4 * m.num_layers * m.hidden_size + n_items else "hidden_size"
    check_memory(
        params * FLOAT_BYTES * copies,
        f"training {cfg.model_type} with model.{field}: {getattr(m, field):,}",
        what=f"{params:,}+ parameters (weights, gradients, optimizer state)",
    )


def training_memory(cfg: ExperimentConfig, n_items: int, n_users: int, longest: int) -> tuple[int, int]:
    """(bytes, parameters): a lower bound of what training `cfg` on `n_items` items needs. The
    parameters are counted exactly on a model built on the meta device (nothing allocated); the
    activations are those one batch of windows of `longest` items must keep for the backward pass
    (per position and layer: q, k, v, attention output, two LayerNorm inputs and the feed-forward's
    hidden layer)."""
    import torch

    from bert4rec.models import build_transformer

    with torch.device("meta"):
        skeleton = build_transformer(cfg.model_type, cfg.model, n_items, n_users)
    params = sum(p.numel() for p in skeleton.parameters())
    m, tc = cfg.model, cfg.train
    copies = TRAINING_COPIES + (1 if tc.ema_decay else 0)
    length = max(1, min(m.max_len, longest))
    per_position = m.num_layers * m.hidden_size * (6 + 2 * m.ffn_multiplier)
    activations = tc.batch_size * length * per_position
    return (params * copies + activations) * FLOAT_BYTES, params


def check_training_memory(cfg: ExperimentConfig, n_items: int, n_users: int, longest: int) -> None:
    """Refuse (ConfigError) before building a model that cannot be trained in the memory budget."""
    least = config_parameters_lower_bound(cfg, n_items)
    copies = TRAINING_COPIES + (1 if cfg.train.ema_decay else 0)
    # sizes alone first: counting on the meta device cannot even describe some absurd shapes
    check_memory(
        least * FLOAT_BYTES * copies,
        f"training {cfg.model_type} on {n_items:,} items",
        what=f"{least:,}+ parameters (weights, gradients, optimizer state)",
    )
    needed, params = training_memory(cfg, n_items, n_users, longest)
    check_memory(
        needed,
        f"training {cfg.model_type} on {n_items:,} items",
        what=f"{params:,} parameters (weights, gradients, optimizer state) and one batch of activations",
    )


def check_split_memory(cfg: ExperimentConfig, model_types: list[str], split: SequenceSplit) -> None:
    """`check_training_memory` for each Transformer of `model_types` on `split`, before any of them
    trains (a compare fails at once rather than after training the first models)."""
    longest = max((len(seq) for seq in split.train), default=1)
    for model_type in model_types:
        if model_type in TRANSFORMER_TYPES:
            model_cfg = cfg.for_model(model_type)  # type: ignore[arg-type]
            check_training_memory(model_cfg, split.n_items, split.vocab.n_users, longest)
