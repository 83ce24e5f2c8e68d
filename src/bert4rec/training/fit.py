"""Train BERT4Rec / SASRec with PyTorch Lightning: checkpoints, early stopping, CSV logs, resume.

Scale-out is Lightning's: `train.devices`, `train.strategy` (ddp, ddp_spawn), `train.num_nodes` and
`train.precision` go to the Trainer. Under DDP each process trains on its share of the length
buckets (`ShardedBatchSampler`), validation users are split between the processes and their NDCG
sums all-reduced, and only global rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import logging
import math
import pickle
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, RichProgressBar, Timer
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, RandomSampler

from bert4rec.config import ExperimentConfig, TrainConfig
from bert4rec.data.kinds import sequence_kind
from bert4rec.data.samplers import LengthBucketSampler
from bert4rec.data.sequences import SequenceSplit
from bert4rec.data.sharding import ShardedBatchSampler, distributed_rank
from bert4rec.data.windows import WindowDataset
from bert4rec.errors import ArtifactError, ConfigError
from bert4rec.evaluation.evaluator import Evaluator
from bert4rec.evaluation.scoring import TransformerScorer
from bert4rec.models import build_transformer
from bert4rec.models.baselines import MFRecommender
from bert4rec.models.transformer import SequenceTransformer
from bert4rec.resources import check_training_memory
from bert4rec.run_logs import read_history
from bert4rec.training.module import VAL_METRIC, SequenceModule
from bert4rec.training.sampled_softmax import NegativeSampler

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    model: SequenceTransformer
    train_seconds: float
    epochs: int
    best_val_ndcg10: float | None
    history: list[dict[str, Any]] = field(default_factory=list)  # per epoch: epoch, elapsed_s, val_ndcg@10
    best_checkpoint: str | None = None
    is_global_zero: bool = True  # False in the other DDP processes, which must not write results


def train_windows(split: SequenceSplit, cfg: ExperimentConfig) -> WindowDataset:
    """The training windows of `cfg.model_type` (the length its kind trains on: max_len items for
    BERT4Rec, max_len + 1 for SASRec's inputs and next-item labels), laid out by train.window_*."""
    window = sequence_kind(cfg.model_type).train_window(cfg.model.max_len)
    tc = cfg.train
    return WindowDataset(split.train, window, tc.window_step, tc.windows_per_user, tc.windows_cover_start)


def make_train_loader(split: SequenceSplit, cfg: ExperimentConfig) -> DataLoader:
    """Windows over the training sequences with the model kind's collator (Cloze masking or next item)."""
    dataset = train_windows(split, cfg)
    if len(dataset) == 0:
        from bert4rec.errors import DataError

        raise DataError("no training sequences with at least 2 items; the data set is too small to train on")
    collate = sequence_kind(cfg.model_type).train_collator(split.n_items, cfg.train)
    # The loader draws a seed from its generator whenever an epoch's iterator is made (after a resume,
    # before the checkpointed states are restored). Its own generator keeps that draw off torch's
    # global one (dropout) and off the shuffle's, which _TrainingRandomness checkpoints.
    loader_generator = torch.Generator().manual_seed(cfg.train.seed)
    if cfg.train.bucket_by_length:
        sampler = LengthBucketSampler(dataset.lengths(), cfg.train.batch_size, seed=cfg.train.seed)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, generator=loader_generator)
    shuffle = RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.train.seed))
    return DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        sampler=shuffle,
        collate_fn=collate,
        generator=loader_generator,
    )


def make_negative_sampler(split: SequenceSplit, cfg: ExperimentConfig) -> NegativeSampler | None:
    """The per-batch negative sampler for train.loss='sampled' (None for the full softmax): proposal
    probabilities from the training interaction counts (or uniform over all items)."""
    tc = cfg.train
    if tc.loss != "sampled":
        return None
    counts = torch.from_numpy(split.item_popularity())  # (n_items + 1,), PAD = 0
    return NegativeSampler.from_counts(counts, tc.n_negatives_train, tc.negative_sampling, seed=tc.seed)


def shard_train_loader(loader: DataLoader, num_replicas: int) -> DataLoader:
    """The loader with its length buckets split between `num_replicas` DDP processes (see
    `ShardedBatchSampler`); a loader without a custom batch sampler is returned unchanged (Lightning
    gives it a DistributedSampler)."""
    if num_replicas <= 1 or not isinstance(loader.batch_sampler, LengthBucketSampler):
        return loader
    log.info(
        "length buckets sharded over %d processes: each trains on every %d-th batch "
        "(global batch = %d x train.batch_size)",
        num_replicas,
        num_replicas,
        num_replicas,
    )
    sampler = ShardedBatchSampler(loader.batch_sampler, num_replicas)
    return DataLoader(loader.dataset, batch_sampler=sampler, collate_fn=loader.collate_fn)


def validation_users(split: SequenceSplit, limit: int | None, seed: int) -> np.ndarray:
    users = split.users("val")
    if limit is not None and limit < len(users):
        users = np.sort(np.random.default_rng(seed).choice(users, size=limit, replace=False))
    return users


class ValidationNDCG:
    """Validation NDCG@10 (full ranking) of a model over fixed users; a class, not a closure, so that
    ddp_spawn can pickle it. Under DDP each process scores every world_size-th user and the sums
    are all-reduced: the value equals the single-process one and no user is scored twice."""

    def __init__(self, evaluator: Evaluator, users: np.ndarray) -> None:
        self.evaluator, self.users = evaluator, users

    def __call__(self, model: SequenceTransformer) -> float:
        rank, world = distributed_rank()
        if world == 1:
            return self.evaluator.evaluate_ndcg10(TransformerScorer(model), which="val", users=self.users)
        import torch.distributed as dist

        shard = self.users[rank::world]
        total = (
            self.evaluator.evaluate_ndcg10(TransformerScorer(model), which="val", users=shard) * len(shard)
            if len(shard)
            else 0.0
        )
        # on the model's device: NCCL reduces GPU tensors only
        sums = torch.tensor([total, len(shard)], dtype=torch.float64, device=next(model.parameters()).device)
        dist.all_reduce(sums)
        return float(sums[0] / sums[1])


class _TrainingRandomness(Callback):
    """The random streams of training: torch's global generator (dropout), the Cloze collator's
    masks, the sampled softmax's negatives, without length buckets the DataLoader's shuffle, and with
    them the bucket sampler's epoch (its order derives from (seed, epoch)).

    Their states go into every checkpoint, so a resumed run draws what an uninterrupted one would
    have drawn instead of starting over from the seed. Under DDP every process builds the same
    collator and negative sampler; the others get their own streams (rank 0 keeps the seed's, so one
    process trains exactly as without DDP). Checkpoints hold rank 0's states; on resume the others
    reseed from (seed, rank, epoch).
    """

    KEY = "training_randomness"
    PER_RANK = ("collator", "negatives")

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._restored: dict[str, torch.Tensor] | None = None

    @staticmethod
    def _generators(trainer: L.Trainer) -> dict[str, torch.Generator]:
        loader = trainer.train_dataloader
        found = {
            "collator": getattr(getattr(loader, "collate_fn", None), "generator", None),
            "shuffle": getattr(getattr(loader, "sampler", None), "generator", None),
            "negatives": getattr(getattr(trainer.lightning_module, "sampler", None), "generator", None),
        }
        return {name: g for name, g in found.items() if isinstance(g, torch.Generator)}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning calls set_epoch on a loader's sampler, not on a batch sampler; without this
        # a resumed run would replay the bucket sampler's order from epoch 0
        set_epoch = getattr(getattr(trainer.train_dataloader, "batch_sampler", None), "set_epoch", None)
        if callable(set_epoch):
            set_epoch(trainer.current_epoch)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = {name: g.get_state() for name, g in self._generators(trainer).items()}
        checkpoint[self.KEY] = {**states, "torch": torch.get_rng_state()}

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._restored = checkpoint.get(self.KEY)  # the loader does not exist yet: applied at train start

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        generators = self._generators(trainer)
        if trainer.global_rank == 0 and self._restored:
            for name, state in self._restored.items():
                if name == "torch":
                    torch.set_rng_state(state)
                elif name in generators:
                    generators[name].set_state(state)
        elif trainer.global_rank > 0:
            self.seed_other_rank(
                generators, trainer.global_rank, trainer.current_epoch if self._restored else None
            )
        self._restored = None

    def seed_other_rank(self, generators: dict[str, torch.Generator], rank: int, epoch: int | None) -> None:
        """DDP: every process builds the same collator and negative sampler; a process other than rank
        0 gets its own stream for each, from (seed, rank, stream) and, on resume, the epoch. The
        shuffle is left alone: a DistributedSampler needs the same order on every process."""
        for stream, name in enumerate(self.PER_RANK):
            if name in generators:
                entropy = [self.seed, rank, stream, *([] if epoch is None else [epoch])]
                generators[name].manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))


def fit_transformer(
    split: SequenceSplit,
    cfg: ExperimentConfig,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
    loggers: Sequence[Logger] = (),
    content: torch.Tensor | None = None,
    extra_callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Train `cfg.model_type` on `split.train`, early-stopping on validation NDCG@10 (full ranking).

    Checkpoints go to `run_dir/checkpoints` (best and last); metrics per epoch to `run_dir/logs`
    (CSV, always) and to any extra `loggers` (experiment trackers). With `resume=True` training
    continues from `checkpoints/last.ckpt` if it exists. The returned model holds the best
    validation weights (with train.ema_decay: the best moving average). Under DDP the other
    processes get `is_global_zero=False` and no weights.
    `content`: the (n_items + 2, model.content_dim) item text vectors a `model.content_fusion` model
    needs (`bert4rec.pipeline.content_vectors`). `extra_callbacks`: more Lightning callbacks (e.g.
    `training.progress.ProgressFile`).
    """
    tc = cfg.train
    start = time.perf_counter()  # train_seconds counts the starting weights too (ALS factors: seconds)
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    ckpt_path = _resume_from(ckpt_dir) if resume else None
    model = _build_model(split, cfg, content, resuming=ckpt_path is not None)
    loader = make_train_loader(split, cfg)
    validate = ValidationNDCG(
        Evaluator(split, cfg.eval), validation_users(split, tc.limit_val_users, tc.seed)
    )
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor=VAL_METRIC,
        mode="max",
        save_top_k=1,
        save_last=True,
        save_on_train_epoch_end=True,
    )
    # train.max_minutes covers the whole fit: the set-up so far (chiefly the starting weights' ALS
    # factors, seconds) comes off the training loop's share; set-up longer than the budget leaves a
    # token one: the Timer stops after the first step
    budget = max(tc.max_minutes * 60 - (time.perf_counter() - start), 0.001) if tc.max_minutes else None
    callbacks = [checkpoint, *_callbacks(tc, progress, budget), *extra_callbacks]
    trainer = _make_trainer(tc, run_dir, ckpt_path, [*loggers], callbacks, progress, n_batches=len(loader))
    world = trainer.num_nodes * trainer.num_devices  # trainer.world_size is only set inside fit
    loader = shard_train_loader(loader, world)
    module = SequenceModule(
        model,
        tc,
        total_steps=tc.epochs * _steps_per_epoch(loader, world),
        validate=validate,
        sampler=make_negative_sampler(split, cfg),
        budget_seconds=budget,
    )
    with warnings.catch_warnings():
        if tc.val_every_n_epochs > 1:
            # the epochs before the first validation have no value to monitor yet; expected, not a
            # user error (validates_after_this_epoch), so Lightning's hint to call log() is dropped
            warnings.filterwarnings("ignore", message=r".*could not find the monitored key")
        trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path, weights_only=True)
    train_seconds = time.perf_counter() - start
    if not trainer.is_global_zero:
        return FitResult(model.cpu().eval(), train_seconds, trainer.current_epoch, None, is_global_zero=False)
    return _best_result(module, trainer, checkpoint, run_dir, train_seconds)


def _build_model(
    split: SequenceSplit, cfg: ExperimentConfig, content: torch.Tensor | None, resuming: bool = False
) -> SequenceTransformer:
    """Seed everything, check the config and memory, then build the untrained network (its starting
    weights from train.output_bias_init / item_embedding_init unless `resuming`: the checkpoint's win)."""
    tc = cfg.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    L.seed_everything(tc.seed, workers=True, verbose=False)
    if cfg.model.content_fusion and content is None:
        raise ConfigError(
            "model.content_fusion is on but no item text vectors were given: pass content= "
            "(bert4rec.pipeline.content_vectors computes them) or set model.content_fusion=false"
        )
    longest = max((len(seq) for seq in split.train), default=1)
    check_training_memory(cfg, split.n_items, split.vocab.n_users, longest)  # before allocating anything
    model = build_transformer(cfg.model_type, cfg.model, split.n_items, split.vocab.n_users, content=content)
    if not resuming:
        init_starting_weights(model, split, cfg)
    return model


def init_starting_weights(model: SequenceTransformer, split: SequenceSplit, cfg: ExperimentConfig) -> None:
    """The starting weights the config asks for beyond the random init: the output bias from the
    training items' log-popularity (train.output_bias_init) and the item ID embeddings from ALS
    item factors (train.item_embedding_init)."""
    if cfg.train.output_bias_init == "log_popularity":
        model.init_output_bias(torch.from_numpy(split.item_popularity()))
    if cfg.train.item_embedding_init == "mf":
        model.init_item_embeddings(mf_item_factors(split, cfg))


def mf_item_factors(split: SequenceSplit, cfg: ExperimentConfig) -> torch.Tensor:
    """(n_items + 1, model.hidden_size) ALS item factors of the training data (train.item_embedding_init
    = 'mf'): the baselines.mf settings with as many factors as the model is wide, seeded by train.seed."""
    mf = cfg.baselines.mf.model_copy(update={"factors": cfg.model.hidden_size, "seed": cfg.train.seed})
    return MFRecommender(**mf.model_dump()).fit(split).item_factors


def _callbacks(tc: TrainConfig, progress: bool, budget_seconds: float | None) -> list[Callback]:
    """Early stopping (unless train.patience is None), the wall-clock budget (`budget_seconds` of
    train.max_minutes left for the training loop), the progress bar and the random streams' checkpointing."""
    callbacks: list[Callback] = []
    if tc.patience is not None:  # None: train every epoch of `epochs`
        # train.val_every_n_epochs > 1: the epochs before the first validation have no value yet
        callbacks.append(
            EarlyStopping(
                monitor=VAL_METRIC,
                mode="max",
                patience=tc.patience,
                check_on_train_epoch_end=True,
                strict=tc.val_every_n_epochs == 1,
            )
        )
    if budget_seconds is not None:
        callbacks.append(Timer(duration=timedelta(seconds=budget_seconds), interval="step"))
    if progress:
        callbacks.append(RichProgressBar(leave=True))
    callbacks.append(_TrainingRandomness(tc.seed))
    return callbacks


def _resume_from(ckpt_dir: Path) -> str | None:
    """`ckpt_dir/last.ckpt` when it exists (checked first: a tampered file is refused), else None."""
    last = ckpt_dir / "last.ckpt"
    if last.exists() or last.is_symlink():
        load_checkpoint(last, ckpt_dir)  # refuses a tampered file before Lightning reads it
        return str(last)
    log.info("no checkpoint at %s; starting from scratch", last)
    return None


def _make_trainer(
    tc: TrainConfig,
    run_dir: Path,
    ckpt_path: str | None,
    loggers: list[Logger],
    callbacks: list[Callback],
    progress: bool,
    *,
    n_batches: int,
) -> L.Trainer:
    """The Lightning Trainer of train.*: CSV logs under `run_dir/logs` plus `loggers`, no Lightning
    validation loop (validation runs inside the training epoch, see `SequenceModule`)."""
    csv_logger = CSVLogger(str(run_dir), name="logs", version=_log_version(run_dir / "logs", ckpt_path))
    return L.Trainer(
        max_epochs=tc.epochs,
        # Lightning ignores a stop request (the Timer's, EarlyStopping's) before min_steps
        min_steps=tc.min_steps,
        accelerator=tc.accelerator,
        devices=tc.devices,
        num_nodes=tc.num_nodes,
        strategy=tc.strategy,
        precision=tc.precision,
        # a length-bucket batch sampler shards itself (shard_train_loader); Lightning cannot
        use_distributed_sampler=not tc.bucket_by_length,
        gradient_clip_val=tc.grad_clip,
        logger=[csv_logger, *loggers],
        callbacks=callbacks,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=max(1, min(50, n_batches)),
        default_root_dir=str(run_dir),
    )


def _steps_per_epoch(loader: DataLoader, world: int) -> int:
    """Optimizer steps per process and epoch: a sharded loader has its share already; a
    DistributedSampler splits the loader later."""
    if isinstance(loader.batch_sampler, ShardedBatchSampler):
        return len(loader)
    return math.ceil(len(loader) / world)


def _best_result(
    module: SequenceModule,
    trainer: L.Trainer,
    checkpoint: ModelCheckpoint,
    run_dir: Path,
    train_seconds: float,
) -> FitResult:
    """Rank 0 after training: the best checkpoint's weights (or their moving average) and the history."""
    best_path = checkpoint.best_model_path
    if best_path and Path(best_path).exists():
        # after a resume best_path comes from the checkpoint's callback state: checked like any file
        best_checkpoint = load_checkpoint(
            Path(best_path), Path(checkpoint.dirpath or run_dir / "checkpoints")
        )
        module.on_load_checkpoint(best_checkpoint)  # as on resume: the best may predate train.ema_decay
        module.load_state_dict(best_checkpoint["state_dict"])
    model = module.evaluated_model  # the moving average with train.ema_decay
    history = read_history(run_dir / "logs")
    # after ddp_spawn this (main) process did not run the loop: epochs and best score come from the logs
    best = checkpoint.best_model_score
    best_val = float(best) if best is not None else max((r[VAL_METRIC] for r in history), default=None)
    return FitResult(
        model=model.cpu().eval(),
        train_seconds=train_seconds,
        epochs=max(trainer.current_epoch, int(history[-1]["epoch"]) + 1 if history else 0),
        best_val_ndcg10=best_val,
        history=history,
        best_checkpoint=best_path or None,
    )


def load_checkpoint(path: Path, ckpt_dir: Path) -> dict[str, Any]:
    """Read a Lightning checkpoint of this run as untrusted input: a regular file (not a symlink)
    directly inside `ckpt_dir`, unpickled with `weights_only=True` (tensors, containers and
    primitives only: a pickle that would import or call anything is refused), and whose
    ModelCheckpoint state names only files inside `ckpt_dir` (Lightning deletes the "previous best"
    it names). Raises ArtifactError with one line; the file's contents are never echoed."""
    path, ckpt_dir = Path(path), Path(ckpt_dir)
    where = f"checkpoint {path}"
    if path.is_symlink():
        raise ArtifactError(f"{where} is a symbolic link; refusing to load it (delete it to start over)")
    if not _inside(path, ckpt_dir):
        raise ArtifactError(f"{where} is outside the run's checkpoint folder {ckpt_dir}; refusing to load it")
    if not path.is_file():
        raise ArtifactError(f"{where} is not a regular file; refusing to load it (delete it to start over)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ArtifactError(
            f"{where} is not a plain weights checkpoint (it holds objects that could run code when "
            "loaded, or is damaged); refusing to load it. Delete it to start over"
        ) from None
    except Exception as err:  # noqa: BLE001 - truncated or not a checkpoint at all
        raise ArtifactError(
            f"{where} cannot be read ({type(err).__name__}); it is truncated or not a checkpoint. "
            "Delete it to start over"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ArtifactError(f"{where} is not a Lightning checkpoint of this run (no state_dict)")
    for name in _checkpoint_paths(checkpoint):
        if name != "" and not (isinstance(name, str) and _inside(Path(name), ckpt_dir)):
            raise ArtifactError(
                f"{where} refers to a file outside the run's checkpoint folder {ckpt_dir} (was the run "
                "folder moved or the file edited?); refusing to resume. Delete it to start over"
            )
    return checkpoint


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path`, with symlinks and `..` resolved, lies directly inside `folder`."""
    try:
        return path.resolve().parent == folder.resolve()
    except (OSError, ValueError):  # a symlink loop, a NUL byte
        return False


def _checkpoint_paths(checkpoint: dict[str, Any]) -> list[object]:
    """Every file name a ModelCheckpoint callback state in `checkpoint` holds ("" for none)."""
    names: list[object] = []
    callbacks = checkpoint.get("callbacks")
    for key, state in callbacks.items() if isinstance(callbacks, dict) else []:
        if not (isinstance(key, str) and key.startswith("ModelCheckpoint") and isinstance(state, dict)):
            continue
        for field_name in ("best_model_path", "kth_best_model_path", "last_model_path"):
            names.append(state.get(field_name) or "")
        best_k = state.get("best_k_models")
        names.extend(best_k if isinstance(best_k, dict) else [])
    return names


def _log_version(logs_dir: Path, ckpt_path: str | None) -> str:
    """CSV log folder below `logs_dir`: the folder itself for a fresh run, `resume-N` for the N-th
    resumed run (Lightning's CSV logger deletes an existing metrics.csv, which would lose the
    epochs trained before the interrupt). A fresh run clears the logs of earlier resumed runs."""
    resumed = sorted(logs_dir.glob("resume-*"), key=lambda p: int(p.name.split("-")[1]))
    if ckpt_path is None:
        if getattr(rank_zero_only, "rank", 0) != 0:  # the other DDP processes write no logs
            return ""
        for folder in resumed:
            shutil.rmtree(folder)
        return ""
    return f"resume-{len(resumed) + 1}"
