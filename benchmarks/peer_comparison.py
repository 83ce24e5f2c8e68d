"""Benchmark: our BERT4Rec / SASRec against RecTools' implementations on the same split, side by side.

Both implementations train on the SAME leave-one-out split (training part only) with the same shared
hyperparameters and the same number of torch threads, one after the other in one process (RecTools
first), and both are scored by OUR Evaluator (full ranking + sampled), so the metrics are computed
identically. Two modes:

* equal epochs (default): each trains `--epochs` epochs; reports seconds per epoch, throughput and the
  speed ratio.
* `--equal-time MINUTES`: each trains for the same wall-clock budget (epochs capped by train.epochs).

Neither validates or early-stops during training; the final weights are evaluated on the test split.
RecTools gets only training interactions for fit (per user: `split.train`, timestamps increasing in
order). At evaluation it is fitted already and `recommend` is called, without refitting, on a dataset
built from the evaluator's input histories (validation: train part; test: train part + validation
item), with k = every item it knows, and its scores are put into our item-index columns.

RecTools needs its own virtualenv (it pins numpy<2 and pytorch-lightning<=2.5.2):

    python3 -m venv .venv-peer
    .venv-peer/bin/pip install "torch==2.13.0" numpy "rectools[torch]==0.19.*" -e .
    .venv-peer/bin/python benchmarks/peer_comparison.py --data-dir ../shared/data/ml-1m --epochs 5

Writes `benchmarks/results/peer-comparison/peer_<name>_<model>.json` (models `bert4rec`,
`rectools_bert4rec`, `sasrec`, `rectools_sasrec`) and `benchmarks/results/peer-comparison/peer_<name>.md`.
Smoke test on a user subsample:

    .venv-peer/bin/python benchmarks/peer_comparison.py --data-dir ../shared/data/ml-1m \
        --max-users 300 --epochs 1 --set model.max_len=50 --results-dir /tmp/peer_smoke

Differences that remain (see `MISMATCHES`, also written into every record); to move ours closer to
RecTools: --set train.weight_decay=0 --set train.warmup_steps=0 --set train.last_item_mask_prob=0
--set model.attention_dropout=0.1 (the cosine learning-rate decay of ours stays).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from bert4rec.config import ExperimentConfig, build_config, parse_overrides
from bert4rec.data.datasets import load_interactions
from bert4rec.data.interactions import Interactions
from bert4rec.data.sequences import SequenceSplit, build_split
from bert4rec.evaluation.evaluator import Evaluator
from bert4rec.evaluation.results import (
    make_record,
    markdown_table,
    package_version,
    run_metadata,
    write_records,
)
from bert4rec.io import atomic_write_text
from bert4rec.pipeline import Prepared, dataset_name

log = logging.getLogger("peer_comparison")
# results are grouped by study: benchmarks/results/<study>/ (index: docs/benchmarks/index.md)
RESULTS = Path(__file__).resolve().parent / "results" / "peer-comparison"
MODELS = ("bert4rec", "sasrec")
DEFAULT_EPOCHS = 10

# What we could not make identical; stored in every record so a table is never read without it.
MISMATCHES = {
    "common": [
        "optimiser: ours AdamW(weight_decay on weights, 0 on embeddings/LayerNorm/bias), linear warmup then "
        "cosine decay to 10%; RecTools Adam(betas 0.9/0.98), constant lr, no weight decay",
        "init: ours truncated normal std 0.02; RecTools xavier_normal on every matrix",
        "architecture: ours LayerNorm+dropout on the input embeddings, final LayerNorm, an output bias per "
        "item; RecTools none of these (dropout on the input embeddings and after each block instead)",
        "attention dropout: ours model.attention_dropout (0 in the presets); RecTools = dropout_rate",
        "softmax classes: ours PAD + items; RecTools PAD + MASK + items (extra-token logits are trained "
        "towards 0 probability)",
        "padding: ours left-pads each batch to its longest window and batches similar lengths together; "
        "RecTools pads every batch to session_max_len",
        "training samples: ours slides windows of max_len (SASRec: max_len + 1) over long histories "
        "(stride train.window_step, default max_len); RecTools keeps only each user's last window "
        "(use --peer-samples windows to give RecTools our windows as pseudo-users)",
        "items that never occur in a training sequence: ours scores them with untrained embeddings; "
        "RecTools does not know them, they get a score below every known item (ties pessimistic)",
        "RecTools runs under its own pins (numpy<2, pytorch-lightning<=2.5.2); ours runs with whatever "
        "the peer virtualenv has (versions in each record)",
    ],
    "bert4rec": [
        "masking: both mask each position with mask_prob and replace 80% [MASK] / 10% random / 10% kept; "
        "ours also makes train.last_item_mask_prob of the samples mask only the last item and masks the "
        "last item of a sample where nothing was drawn; RecTools does neither (such samples give no loss)",
        "loss work: ours computes logits only at masked positions; RecTools at every position, then "
        "ignores the unmasked ones",
        "blocks: both pre-LN, GELU feed-forward of ffn_multiplier x hidden",
    ],
    "sasrec": [
        "blocks: ours pre-LN with GELU feed-forward of ffn_multiplier x hidden; RecTools' SASRec layers "
        "(as in the SASRec paper) ReLU feed-forward of hidden x hidden, LayerNorm on the query only",
        "key padding: ours masks padded keys; RecTools' SASRec uses the causal mask only (its default "
        "use_key_padding_mask=False)",
    ],
}


# ---------------------------------------------------------------------------- data


def subsample_users(interactions: Interactions, max_users: int, seed: int) -> Interactions:
    """Keep a deterministic random subset of `max_users` users (all their interactions)."""
    users = interactions.frame["user_id"].unique().sort()
    if max_users >= len(users):
        return interactions
    rng = np.random.default_rng(seed)
    chosen = users.gather(np.sort(rng.choice(len(users), size=max_users, replace=False)))
    frame = interactions.frame.filter(pl.col("user_id").is_in(chosen.implode()))
    stats = {**interactions.stats, "subsampled_users": max_users, "interactions": frame.height}
    return dataclasses.replace(interactions, frame=frame, stats=stats)


def prepare_data(cfg: ExperimentConfig, max_users: int | None) -> Prepared:
    start = time.perf_counter()
    interactions = load_interactions(cfg.data)
    if max_users:
        interactions = subsample_users(interactions, max_users, cfg.data.seed)
    split = build_split(interactions)
    return Prepared(interactions, split, time.perf_counter() - start)


def training_sequences(split: SequenceSplit, model_type: str, cfg: ExperimentConfig, mode: str) -> list:
    """What RecTools is fitted on: each user's training items ("users"), or our training windows
    ("windows", one pseudo-user per window, so both see the same samples per epoch)."""
    if mode == "users":
        return list(split.train)
    from bert4rec.training.fit import train_windows

    dataset = train_windows(split, cfg.model_copy(update={"model_type": model_type}))
    return [dataset[i][1] for i in range(len(dataset))]


def sample_counts(sequences: Sequence[np.ndarray], keep_last: int) -> tuple[int, int]:
    """(#training samples, #real items in them) when each sequence keeps its last `keep_last` items and
    sequences shorter than 2 are dropped (both implementations' rule)."""
    lengths = np.array([min(len(s), keep_last) for s in sequences if len(s) >= 2], dtype=np.int64)
    return len(lengths), int(lengths.sum())


# ---------------------------------------------------------------------------- timing


def epoch_timer(base: type) -> Any:
    """A Lightning callback (of `base`: ours uses `lightning`, RecTools `pytorch_lightning`) that records
    the wall time of each training epoch."""

    class EpochTimer(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self._start = 0.0

        @staticmethod
        def _sync() -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self._sync()
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self._sync()
            self.seconds.append(time.perf_counter() - self._start)
            log.info("  epoch %d: %.2f s", len(self.seconds), self.seconds[-1])

    return EpochTimer()


@dataclasses.dataclass
class Trained:
    scorer: Any
    fit_seconds: float  # whole fit call, data preparation included
    epoch_seconds: list[float]
    steps: int
    steps_per_epoch: int
    samples_per_epoch: int
    items_per_epoch: int
    n_parameters: int
    config: dict[str, Any]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def epochs(self) -> float:
        """Epochs trained, fractional when a time budget stopped training mid-epoch."""
        return self.steps / max(self.steps_per_epoch, 1)

    def speed(self) -> dict[str, Any]:
        train = sum(self.epoch_seconds)
        complete = self.epoch_seconds[: self.steps // max(self.steps_per_epoch, 1)]
        return {
            "epochs": round(self.epochs, 3),
            "steps": self.steps,
            "steps_per_epoch": self.steps_per_epoch,
            "epoch_seconds": [round(s, 3) for s in self.epoch_seconds],
            # robust to the first epoch's warm-up and to a noisy machine; complete epochs only
            "median_epoch_seconds": round(float(np.median(complete)), 3) if complete else None,
            "seconds_per_epoch": round(train / max(self.epochs, 1e-9), 3),
            "train_samples_per_epoch": self.samples_per_epoch,
            "train_items_per_epoch": self.items_per_epoch,
            "train_sequences_per_second": round(self.samples_per_epoch * self.epochs / max(train, 1e-9), 1),
            "train_items_per_second": round(self.items_per_epoch * self.epochs / max(train, 1e-9), 1),
            "fit_seconds": round(self.fit_seconds, 3),
            "n_parameters": self.n_parameters,
        }


def _trainer_kwargs(cfg: ExperimentConfig, budget_minutes: float | None) -> dict[str, Any]:
    """Trainer settings both implementations share: epochs or time budget, clipping, no val/logging."""
    kwargs: dict[str, Any] = {
        "max_epochs": cfg.train.epochs,
        "accelerator": cfg.train.accelerator,
        "devices": 1,
        "gradient_clip_val": cfg.train.grad_clip,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "deterministic": False,
    }
    if budget_minutes:
        kwargs["max_time"] = timedelta(minutes=budget_minutes)
    else:
        kwargs["min_epochs"] = cfg.train.epochs
    return kwargs


# ---------------------------------------------------------------------------- ours


def train_ours(
    model_type: str, cfg: ExperimentConfig, split: SequenceSplit, budget_minutes: float | None
) -> Trained:
    """Our model, trained with our loader, LightningModule and loss; no per-epoch validation."""
    import lightning as L

    from bert4rec.evaluation.scoring import TransformerScorer
    from bert4rec.models import build_transformer
    from bert4rec.training.fit import make_negative_sampler, make_train_loader
    from bert4rec.training.module import SequenceModule

    cfg = cfg.model_copy(update={"model_type": model_type})
    start = time.perf_counter()
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    model = build_transformer(model_type, cfg.model, split.n_items, split.vocab.n_users)
    loader = make_train_loader(split, cfg)
    module = SequenceModule(
        model,
        cfg.train,
        total_steps=cfg.train.epochs * len(loader),
        validate=None,
        sampler=make_negative_sampler(split, cfg),  # None unless train.loss=sampled
    )
    timer = epoch_timer(L.Callback)
    trainer = L.Trainer(callbacks=[timer], **_trainer_kwargs(cfg, budget_minutes))
    trainer.fit(module, train_dataloaders=loader)
    fit_seconds = time.perf_counter() - start
    lengths = loader.dataset.lengths()  # type: ignore[attr-defined]
    return Trained(
        scorer=TransformerScorer(model.eval(), name=model_type),
        fit_seconds=fit_seconds,
        epoch_seconds=timer.seconds,
        steps=trainer.global_step,
        steps_per_epoch=len(loader),
        samples_per_epoch=len(lengths),
        items_per_epoch=int(lengths.sum()),
        n_parameters=model.num_parameters(),
        config=cfg.model_dump(mode="json"),
    )


# ---------------------------------------------------------------------------- RecTools


def peer_params(model_type: str, cfg: ExperimentConfig) -> dict[str, Any]:
    """Our config -> RecTools constructor arguments (the shared hyperparameters)."""
    from rectools.models.nn.item_net import IdEmbeddingsItemNet

    params: dict[str, Any] = {
        "session_max_len": cfg.model.max_len,
        "n_factors": cfg.model.hidden_size,
        "n_blocks": cfg.model.num_layers,
        "n_heads": cfg.model.num_heads,
        "dropout_rate": cfg.model.dropout,
        "batch_size": cfg.train.batch_size,
        "lr": cfg.train.lr,
        "epochs": cfg.train.epochs,
        "loss": "softmax",
        "train_min_user_interactions": 2,
        "deterministic": False,
        "verbose": 0,
        "dataloader_num_workers": 0,
        "item_net_block_types": (IdEmbeddingsItemNet,),  # no item features
        "recommend_batch_size": cfg.eval.batch_size,
    }
    if cfg.train.loss == "sampled":
        # RecTools draws its negatives uniformly and without a logQ correction; ours follow
        # train.negative_sampling (popularity by default) with the correction
        params["loss"] = "sampled_softmax"
        params["n_negatives"] = cfg.train.n_negatives_train
    if model_type == "bert4rec":
        params["mask_prob"] = cfg.train.mask_prob
        params["transformer_layers_kwargs"] = {"ff_factors_multiplier": cfg.model.ffn_multiplier}
    return params


def _interactions_frame(sequences: Sequence[np.ndarray], user_ids: np.ndarray) -> Any:
    """RecTools interactions: one row per item, timestamps increasing along each sequence."""
    import pandas as pd
    from rectools import Columns

    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    positions = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return pd.DataFrame(
        {
            Columns.User: np.repeat(user_ids, lengths),
            Columns.Item: np.concatenate(sequences).astype(np.int64) if len(sequences) else [],
            Columns.Weight: 1.0,
            Columns.Datetime: pd.to_datetime(positions, unit="s"),
        }
    )


class RecToolsScorer:
    """A fitted RecTools transformer as our `Scorer`: column j = our item index j.

    Each call builds a RecTools dataset from the given histories (user ids = row numbers, timestamps =
    positions) and calls `recommend` with k = every item the model knows and no seen-item filter (our
    Evaluator filters). Items the model never saw in training score below every known item.
    """

    def __init__(self, model: Any, n_items: int, name: str) -> None:
        self.model = model
        self.n_items = n_items
        self.name = name
        self.known_items = np.asarray(model.data_preparator.get_known_item_ids(), dtype=np.int64)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        from rectools import Columns
        from rectools.dataset import Dataset

        scores = np.full((len(histories), self.n_items + 1), np.nan, dtype=np.float32)
        rows = np.array([i for i, h in enumerate(histories) if len(h)], dtype=np.int64)
        if len(rows):
            frame = _interactions_frame([histories[i] for i in rows], rows)
            with warnings.catch_warnings():
                # users whose history holds no known item are cold for RecTools: their row stays constant
                warnings.filterwarnings("ignore", message=".*cold.*")
                reco = self.model.recommend(
                    users=rows,
                    dataset=Dataset.construct(frame),
                    k=len(self.known_items),
                    filter_viewed=False,
                    add_rank_col=False,
                    on_unsupported_targets="ignore",
                )
            r = reco[Columns.User].to_numpy(dtype=np.int64)
            scores[r, reco[Columns.Item].to_numpy(dtype=np.int64)] = reco[Columns.Score].to_numpy()
        # unknown items (and rows without recommendations) get a floor below the row's lowest score
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
            floor = np.nanmin(scores[:, 1:], axis=1, keepdims=True) - 1.0
        floor = np.where(np.isnan(floor), 0.0, floor)
        return torch.from_numpy(np.where(np.isnan(scores), floor, scores).astype(np.float32))


def train_peer(
    model_type: str,
    cfg: ExperimentConfig,
    split: SequenceSplit,
    budget_minutes: float | None,
    samples: str,
) -> Trained:
    """RecTools' model fitted on the training part only (no validation split, no early stopping)."""
    import pytorch_lightning as pl
    from rectools.dataset import Dataset
    from rectools.models.nn.transformers.bert4rec import BERT4RecModel
    from rectools.models.nn.transformers.sasrec import SASRecModel

    model_cls = BERT4RecModel if model_type == "bert4rec" else SASRecModel
    sequences = training_sequences(split, model_type, cfg, samples)
    start = time.perf_counter()
    frame = _interactions_frame(sequences, np.arange(len(sequences)))
    model = model_cls(**peer_params(model_type, cfg))
    timer = epoch_timer(pl.Callback)
    # documented way to give a RecTools transformer a custom trainer: assign `_trainer`
    model._trainer = pl.Trainer(callbacks=[timer], **_trainer_kwargs(cfg, budget_minutes))
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    model.fit(Dataset.construct(frame))
    fit_seconds = time.perf_counter() - start
    trainer = model.fit_trainer  # `fit` trains a deep copy of `_trainer`, callbacks included
    fitted_timer = next(c for c in trainer.callbacks if isinstance(c, type(timer)))
    keep = cfg.model.max_len + (1 if model_type == "sasrec" else 0)
    n_samples, n_items = sample_counts(sequences, keep)
    config = model.get_config(simple_types=True)
    return Trained(
        scorer=RecToolsScorer(model, split.n_items, name=f"rectools_{model_type}"),
        fit_seconds=fit_seconds,
        epoch_seconds=fitted_timer.seconds,
        steps=trainer.global_step,
        steps_per_epoch=int(trainer.num_training_batches),
        samples_per_epoch=n_samples,
        items_per_epoch=n_items,
        n_parameters=sum(p.numel() for p in model.torch_model.parameters()),
        config=config,
        extra={"items_unknown_to_model": split.n_items - len(model.data_preparator.get_known_item_ids())},
    )


# ---------------------------------------------------------------------------- run


def _versions() -> dict[str, str | None]:
    packages = ("bert4rec", "rectools", "torch", "lightning", "pytorch-lightning", "numpy", "pandas")
    return {package: package_version(package) for package in packages}


def evaluate(
    trained: Trained,
    *,
    model: str,
    implementation: str,
    model_type: str,
    cfg: ExperimentConfig,
    prepared: Prepared,
    evaluator: Evaluator,
    run_info: dict[str, Any],
) -> dict[str, Any]:
    start = time.perf_counter()
    metrics = evaluator.evaluate(trained.scorer, which="test")
    eval_seconds = time.perf_counter() - start
    speed = trained.speed()
    meta = run_metadata(trained.config, cfg.train.seed, prepared.split.fingerprint, prepared.split.stats)
    return make_record(
        model,
        dataset_name(cfg),
        metrics,
        round(sum(trained.epoch_seconds), 3),
        trained.config,
        implementation=implementation,
        versions=_versions(),
        **speed,
        eval_seconds=round(eval_seconds, 3),
        **trained.extra,
        **run_info,
        mismatches=MISMATCHES["common"] + MISMATCHES[model_type],
        run=meta,
    )


def speed_table(records: list[dict[str, Any]]) -> str:
    """Markdown: per model the training speed of both implementations and the ratio."""
    lines = [
        "Training speed (wall time of the training epochs only; same split, hyperparameters and threads). "
        "An epoch is every training sample once; the two epochs hold the same samples only with "
        "--peer-samples windows, so items/s is the like-for-like speed.",
        "",
        "| model | implementation | epochs | samples/epoch | s/epoch | sequences/s | items/s | train s | "
        "NDCG@10 | HR@10 | s/epoch ratio (rectools / ours) | items/s ratio (ours / rectools) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        full = r["metrics"]["full"]
        ratio = r.get("seconds_per_epoch_ratio_rectools_over_ours")
        items_ratio = r.get("items_per_second_ratio_ours_over_rectools")
        lines.append(
            f"| {r['model']} | {r['implementation']} | {r['epochs']:g} | {r['train_samples_per_epoch']} | "
            f"{r['seconds_per_epoch']:.2f} | {r['train_sequences_per_second']:.1f} | "
            f"{r['train_items_per_second']:.0f} | {r['train_seconds']:.1f} | {full['ndcg@10']:.4f} | "
            f"{full['hr@10']:.4f} | {'-' if ratio is None else f'{ratio:.2f}'} | "
            f"{'-' if items_ratio is None else f'{items_ratio:.2f}'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="ml-1m")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: bert4rec,sasrec")
    p.add_argument(
        "--epochs", type=int, default=None, help=f"epochs each (default {DEFAULT_EPOCHS}; --equal-time: cap)"
    )
    p.add_argument("--equal-time", type=float, default=None, metavar="MINUTES", help="training budget each")
    p.add_argument(
        "--ours-minutes",
        type=float,
        default=None,
        metavar="MINUTES",
        help="with --equal-time: give ours this smaller budget instead (e.g. half, to test "
        "'ours reaches RecTools' NDCG@10 in half the time')",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads for both implementations")
    p.add_argument("--max-users", type=int, default=None, help="deterministic user subsample (smoke runs)")
    p.add_argument(
        "--peer-samples",
        choices=("users", "windows"),
        default="users",
        help="RecTools training samples: each user's last window (its own behaviour) or our windows",
    )
    p.add_argument("--name", default=None, help="results files peer_<name>_<model>.json, peer_<name>.md")
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument(
        "--set", dest="sets", action="append", default=[], help="config override section.field=value"
    )
    args = p.parse_args(argv)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    import lightning  # noqa: F401  (imported here so that their loggers exist before we quiet them)
    import pytorch_lightning  # noqa: F401

    for noisy in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    warnings.filterwarnings("ignore", message=".*`validation_step` but have no `val_dataloader`.*")
    # RecTools' own config dump serialises its item-net tuple with a pydantic warning; harmless
    warnings.filterwarnings("ignore", message=".*Pydantic serializer warnings.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="rectools")  # its pandas calls
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's own deprecation notice

    if args.ours_minutes is not None and not args.equal_time:
        p.error("--ours-minutes needs --equal-time (RecTools' budget)")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    overrides: dict[str, Any] = parse_overrides(args.sets)
    if args.data_dir:
        overrides.setdefault("data", {})["data_dir"] = str(args.data_dir)
    if args.equal_time:
        # how our pipeline expresses a budget (SequenceModule may fit its lr schedule to it)
        overrides.setdefault("train", {})["max_minutes"] = args.equal_time
    if args.epochs is not None or not args.equal_time:
        overrides.setdefault("train", {})["epochs"] = args.epochs or DEFAULT_EPOCHS
    cfg = build_config(args.preset, overrides)
    torch.set_num_threads(args.threads)

    prepared = prepare_data(cfg, args.max_users)
    split = prepared.split
    log.info("prepared %s in %.2f s: %s", cfg.data.dataset, prepared.seconds, prepared.stats)
    name = args.name or (
        dataset_name(cfg)
        + (f"-u{args.max_users}" if args.max_users else "")
        + (f"-equal-time-{args.equal_time:g}min" if args.equal_time and not args.ours_minutes else "")
        + (f"-rectools-{args.equal_time:g}min-ours-{args.ours_minutes:g}min" if args.ours_minutes else "")
    )
    ours_minutes = args.ours_minutes or args.equal_time
    # our lr schedule is fitted to train.max_minutes, so ours gets a config with its own budget
    ours_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_minutes": ours_minutes})})
    run_info = {
        "mode": "equal_time" if args.equal_time else "equal_epochs",
        "budget_minutes": args.equal_time,
        "ours_budget_minutes": ours_minutes,
        "threads": args.threads,
        "peer_samples": args.peer_samples,
        "max_users": args.max_users,
        "prepare_seconds": round(prepared.seconds, 3),
        "shared_hyperparameters": {mt: peer_params_summary(mt, cfg) for mt in models},
    }
    evaluator = Evaluator(split, cfg.eval)  # one instance: identical negatives for every model
    records: list[dict[str, Any]] = []
    for model_type in models:
        common: dict[str, Any] = {
            "model_type": model_type,
            "cfg": cfg,
            "prepared": prepared,
            "evaluator": evaluator,
            "run_info": run_info,
        }
        log.info("[rectools %s] training", model_type)
        peer = train_peer(model_type, cfg, split, args.equal_time, args.peer_samples)
        peer_rec = evaluate(peer, model=f"rectools_{model_type}", implementation="rectools", **common)
        log.info("[ours %s] training", model_type)
        ours = train_ours(model_type, ours_cfg, split, ours_minutes)
        ours_rec = evaluate(ours, model=model_type, implementation="bert4rec", **{**common, "cfg": ours_cfg})
        ratio = peer_rec["seconds_per_epoch"] / max(ours_rec["seconds_per_epoch"], 1e-9)
        # epochs differ in size unless --peer-samples windows: items/s compares the work rate
        items_ratio = ours_rec["train_items_per_second"] / max(peer_rec["train_items_per_second"], 1e-9)
        for rec in (peer_rec, ours_rec):
            rec["seconds_per_epoch_ratio_rectools_over_ours"] = round(ratio, 3)
            rec["items_per_second_ratio_ours_over_rectools"] = round(items_ratio, 3)
            full, pop = rec["metrics"]["full"], rec["metrics"]["sampled_popularity"]
            log.info(
                "%-18s %5.2f epochs  %7.2f s/epoch  %8.1f seq/s  full ndcg@10=%.4f hr@10=%.4f  "
                "sampled(pop) ndcg@10=%.4f hr@10=%.4f",
                rec["model"],
                rec["epochs"],
                rec["seconds_per_epoch"],
                rec["train_sequences_per_second"],
                full["ndcg@10"],
                full["hr@10"],
                pop["ndcg@10"],
                pop["hr@10"],
            )
        log.info(
            "%s: RecTools takes %.2fx our seconds per epoch; ours trains %.2fx RecTools' items per second "
            "(epochs: ours %d samples / %d items, RecTools %d / %d)",
            model_type,
            ratio,
            items_ratio,
            ours_rec["train_samples_per_epoch"],
            ours_rec["train_items_per_epoch"],
            peer_rec["train_samples_per_epoch"],
            peer_rec["train_items_per_epoch"],
        )
        records += [peer_rec, ours_rec]

    _, table = write_records(records, args.results_dir, f"peer_{name}")
    atomic_write_text(table, markdown_table(records) + "\n" + speed_table(records))
    print(table.read_text())
    return 0


def peer_params_summary(model_type: str, cfg: ExperimentConfig) -> dict[str, Any]:
    """The mapping our config -> RecTools, as plain values (for the records)."""
    params = peer_params(model_type, cfg)
    params["item_net_block_types"] = [t.__name__ for t in params["item_net_block_types"]]
    params["grad_clip (both trainers)"] = cfg.train.grad_clip
    return params


if __name__ == "__main__":
    sys.exit(main())
