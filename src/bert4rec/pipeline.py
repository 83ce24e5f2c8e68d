"""The main job as library functions: prepare data -> train -> evaluate -> save. The CLI wraps these."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bert4rec.artifacts import Bundle, save_bundle
from bert4rec.config import BASELINE_TYPES, MODEL_TYPES, TRANSFORMER_TYPES, ExperimentConfig
from bert4rec.data.datasets import load_interactions
from bert4rec.data.interactions import Interactions
from bert4rec.data.sequences import SequenceSplit, Split, build_split
from bert4rec.evaluation.diagnostics import (
    BASELINE_NAMES,
    diagnostics,
    history_summary,
    short_history_finding,
)
from bert4rec.evaluation.evaluator import Evaluator
from bert4rec.evaluation.genres import item_genres
from bert4rec.evaluation.results import make_record, markdown_table, run_metadata, write_records
from bert4rec.evaluation.scoring import TransformerScorer
from bert4rec.models.base import Scorer
from bert4rec.models.baselines import build_baseline

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import torch
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.loggers import Logger

    from bert4rec.models.transformer import SequenceTransformer
    from bert4rec.text import TextEncoder

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    interactions: Interactions
    split: SequenceSplit
    seconds: float
    # validation NDCG@10 of the diagnostics' baselines, fitted once per split and validation users
    baseline_val_ndcg: dict[tuple[Any, ...], float] = field(default_factory=dict, repr=False)

    @property
    def stats(self) -> dict[str, Any]:
        return self.split.stats


@dataclass
class ModelRun:
    model_type: str
    scorer: Scorer
    train_seconds: float
    record: dict[str, Any] = field(default_factory=dict)
    artifact: Path | None = None
    # False in the other processes of a DDP run: they train, then leave results and files to rank 0
    is_global_zero: bool = True


def is_global_zero() -> bool:
    """Whether this process is global rank 0 (always, without DDP): the one that writes results."""
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def prepare(cfg: ExperimentConfig) -> Prepared:
    """Load, clean and split the data named by `cfg.data` (timed). With `model.content_fusion` (on
    when the data names item text) the text encoder's packages are checked first."""
    if cfg.model.content_fusion:
        from bert4rec.text import require_encoder

        require_encoder()  # fail before reading the data, naming the extra to install
    start = time.perf_counter()
    interactions = load_interactions(cfg.data)
    split = build_split(interactions, cfg.data.val_users)
    return Prepared(interactions, split, time.perf_counter() - start)


def content_vectors(prepared: Prepared, encoder: TextEncoder | None = None) -> torch.Tensor:
    """(n_items + 2, D) item text vectors for `model.content_fusion`: each item's title + metadata
    embedded with all-MiniLM-L6-v2 (or `encoder`); PAD, MASK and items without metadata are zero.
    Raises DataError when the data has no item metadata."""
    from bert4rec.errors import DataError
    from bert4rec.text import MiniLMEncoder, item_text_vectors

    data = prepared.interactions
    if data.items is None:
        raise DataError(
            f"{data.source}: model.content_fusion needs item titles or metadata, and this data has none; "
            "give an item file (data.items_path, data.metadata_cols, data.display_col) or set "
            "model.content_fusion=false"
        )
    start = time.perf_counter()
    vectors = item_text_vectors(
        data.items, prepared.split.vocab, data.display_col, encoder or MiniLMEncoder()
    )
    log.info("embedded %d item texts in %.1f s", prepared.split.n_items, time.perf_counter() - start)
    return vectors


def dataset_name(cfg: ExperimentConfig) -> str:
    return cfg.data.path.stem if cfg.data.dataset == "file" and cfg.data.path else cfg.data.dataset


@dataclass
class _FitRequest:
    """What every model's fit step gets from `train_and_evaluate`."""

    model_type: str
    cfg: ExperimentConfig  # already `for_model(model_type)`
    prepared: Prepared
    run_dir: Path
    is_global_zero: bool  # False in the other DDP processes: they train, rank 0 evaluates and writes
    tracker: Logger | None  # None in the other DDP processes
    ids: dict[str, Any]  # seed and data fingerprint, logged with the parameters
    resume: bool
    progress: bool
    content: torch.Tensor | None
    callbacks: Sequence[Callback]


@dataclass
class _Fitted:
    """A fitted model as `train_and_evaluate` evaluates, records and saves it."""

    scorer: Scorer
    train_seconds: float
    config: dict[str, Any] = field(default_factory=dict)  # the record's "config"
    extra: dict[str, Any] = field(default_factory=dict)  # more record fields (epochs, history, ...)
    model: SequenceTransformer | None = None  # saved as a bundle when given
    is_global_zero: bool = True


def train_and_evaluate(
    model_type: str,
    cfg: ExperimentConfig,
    prepared: Prepared,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    save_artifact: bool = True,
    content: torch.Tensor | None = None,
    callbacks: Sequence[Callback] = (),
) -> ModelRun:
    """Fit one model on the training part, evaluate it on the test split, optionally save a bundle.

    A Transformer with `model.content_fusion` uses `content` as its item text vectors, by default
    `content_vectors(prepared)` (MiniLM); they are saved inside the bundle's weights. `callbacks`
    are extra Lightning callbacks for a Transformer's training (e.g. `training.progress.ProgressFile`).

    The config, per-epoch metrics and the evaluation also go to `cfg.train.logger`'s tracker (a
    run named after the model, under `run_dir`). Under DDP only global rank 0 evaluates, writes and
    tracks; the other processes return a run with `is_global_zero=False` and an empty record.
    """
    from bert4rec.training.tracking import log_evaluation, make_tracker

    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model {model_type!r}; choose from {', '.join(MODEL_TYPES)}")
    cfg = cfg.for_model(model_type)  # type: ignore[arg-type]  # checked against MODEL_TYPES above
    split = prepared.split
    run_dir = Path(run_dir)
    primary = is_global_zero()
    # before training: a mistyped eval.genre_column fails now, not after the run
    genres = item_genres(prepared.interactions.items, split.vocab, cfg.eval.genre_column)
    tracker = make_tracker(cfg.train.logger, run_dir, model_type) if primary else None
    ids = {"seed": cfg.train.seed, "data_fingerprint": split.fingerprint}
    request = _FitRequest(
        model_type=model_type,
        cfg=cfg,
        prepared=prepared,
        run_dir=run_dir,
        is_global_zero=primary,
        tracker=tracker,
        ids=ids,
        resume=resume,
        progress=progress,
        content=content,
        callbacks=callbacks,
    )
    fitted = _FIT_STEPS[model_type](request)
    if not fitted.is_global_zero:
        return ModelRun(model_type, fitted.scorer, fitted.train_seconds, is_global_zero=False)
    start = time.perf_counter()
    metrics = Evaluator(split, cfg.eval, genres).evaluate(fitted.scorer, which="test")
    extra = {**fitted.extra, "eval_seconds": round(time.perf_counter() - start, 3)}
    meta = run_metadata(fitted.config, cfg.train.seed, split.fingerprint, split.stats)
    record = make_record(
        model_type,
        dataset_name(cfg),
        metrics,
        round(fitted.train_seconds, 2),
        fitted.config,
        run=meta,
        **extra,
    )
    log_evaluation(tracker, record, markdown_table([record]))
    run = ModelRun(model_type, fitted.scorer, fitted.train_seconds, record)
    if save_artifact and fitted.model is not None:
        run.artifact = save_bundle(
            run_dir / model_type / "model",
            config=cfg,
            model=fitted.model,
            split=split,
            items=prepared.interactions.items,
            display_col=prepared.interactions.display_col,
            metrics=metrics,
            run={**meta, "train_seconds": round(fitted.train_seconds, 2)},
        )
    return run


def _fit_transformer(request: _FitRequest) -> _Fitted:
    """Train BERT4Rec or SASRec with Lightning (`training.fit.fit_transformer`), with the
    diagnostics (short histories, baselines beaten, learning curve) in the record."""
    # heavy imports (Lightning) only when training
    from bert4rec.training.fit import fit_transformer
    from bert4rec.training.tracking import log_params

    model_type, cfg, prepared = request.model_type, request.cfg, request.prepared
    history_lengths = history_summary(prepared.split.train)
    short = short_history_finding(history_lengths)
    if short is not None:
        log.warning("%s: %s; %s", model_type, short["message"], short["fix"])
    log_params(request.tracker, cfg.model_dump(mode="json"), request.ids)
    content = request.content
    if cfg.model.content_fusion and content is None:
        content = content_vectors(prepared)
    fit = fit_transformer(
        prepared.split,
        cfg,
        request.run_dir / model_type,
        resume=request.resume,
        progress=request.progress,
        loggers=[request.tracker] if request.tracker is not None else [],
        content=content if cfg.model.content_fusion else None,
        extra_callbacks=request.callbacks,
    )
    if not fit.is_global_zero:
        return _Fitted(TransformerScorer(fit.model), fit.train_seconds, is_global_zero=False)
    findings = diagnostics(
        model_type,
        fit.best_val_ndcg10,
        baseline_val_ndcg(prepared, cfg),
        history_lengths,
        epochs_trained=fit.epochs,
        epochs_planned=cfg.train.epochs,
        lr=cfg.train.lr,
        history=fit.history,
    )
    # INFO: the CLI prints the findings at the end of the run; the record keeps them
    for finding in findings["findings"]:
        if finding["kind"] != "short_histories":  # that one was a warning before training
            log.info("%s: %s; fix: %s", model_type, finding["message"], finding["fix"])
    extra = {
        "epochs": fit.epochs,
        "best_val_ndcg@10": fit.best_val_ndcg10,
        "history": fit.history,
        "n_parameters": fit.model.num_parameters(),
        "diagnostics": findings,
    }
    scorer = TransformerScorer(fit.model, name=model_type)
    return _Fitted(scorer, fit.train_seconds, cfg.model_dump(mode="json"), extra, model=fit.model)


def _fit_baseline(request: _FitRequest) -> _Fitted:
    """Fit popularity, item-KNN or MF on the training part (only global rank 0: a baseline is cheap)."""
    from bert4rec.training.tracking import log_params

    cfg = request.cfg
    baseline = build_baseline(request.model_type, cfg.baselines)
    if not request.is_global_zero:
        return _Fitted(baseline, 0.0, is_global_zero=False)
    start = time.perf_counter()
    baseline.fit(request.prepared.split)
    train_seconds = time.perf_counter() - start
    config = {
        "model_type": request.model_type,
        "data": cfg.data.model_dump(mode="json"),
        "eval": cfg.eval.model_dump(mode="json"),
        "baseline": baseline.get_config(),
    }
    log_params(request.tracker, config, request.ids)
    return _Fitted(baseline, train_seconds, config)


# the fit step of each model: every one returns a `_Fitted`, so train_and_evaluate does not branch
_FIT_STEPS: dict[str, Callable[[_FitRequest], _Fitted]] = {
    **dict.fromkeys(TRANSFORMER_TYPES, _fit_transformer),
    **dict.fromkeys(BASELINE_TYPES, _fit_baseline),
}


def baseline_val_ndcg(prepared: Prepared, cfg: ExperimentConfig) -> dict[str, float]:
    """Validation NDCG@10 of popularity and item-KNN on the split and validation users the
    Transformers early-stop on (fitted here, once per split and user set: both take seconds)."""
    from bert4rec.training.fit import validation_users

    users = validation_users(prepared.split, cfg.train.limit_val_users, cfg.train.seed)
    evaluator = Evaluator(prepared.split, cfg.eval)
    out: dict[str, float] = {}
    for name in BASELINE_NAMES:
        settings = cfg.baselines.model_dump_json()
        key = (name, settings, cfg.train.limit_val_users, cfg.train.seed, cfg.eval.filter_seen)
        if key not in prepared.baseline_val_ndcg:
            baseline = build_baseline(name, cfg.baselines).fit(prepared.split)
            prepared.baseline_val_ndcg[key] = evaluator.evaluate_ndcg10(baseline, which="val", users=users)
        out[name] = prepared.baseline_val_ndcg[key]
    return out


@dataclass
class SavedEvaluation:
    """Metrics of saved models re-evaluated by `evaluate_bundles`: one model, or a seed ensemble."""

    model: str  # the model type; "<model_type>_ensemble" for several members
    dataset: str
    which: str  # "val" or "test"
    metrics: dict[str, Any]
    config: dict[str, Any]  # the first member's config (members differ only in train.seed, unless mixed)
    member_seeds: list[int]
    combine: str | None  # how an ensemble combined its members; None for one model
    run: dict[str, Any]  # run_metadata: the first member's seed, data fingerprint and stats, versions
    eval_seconds: float
    # the members' summed training seconds, from their bundles; None when a bundle predates the
    # field or holds no valid number
    train_seconds: float | None = None
    # a mixed ensemble's members' settings that differ from the first member's (dotted paths, the
    # seed aside), one list per member; empty lists for a seed ensemble
    member_differences: list[list[str]] = field(default_factory=list)


def evaluate_bundles(
    bundle_paths: Sequence[Path],
    *,
    which: str = "test",
    combine: str = "prob",
    data_dir: Path | None = None,
    path: Path | None = None,
    mixed: bool = False,
) -> SavedEvaluation:
    """Re-evaluate saved models on their data: one bundle as it is, several as one seed ensemble
    (`EnsembleScorer`: the members' softmax-normalised scores averaged, `combine` says how).

    The data are read again from the (first) bundle's config; `data_dir` replaces `data.data_dir`
    and `path` reads a file instead (e.g. when the bundles were trained elsewhere); they must give
    the split the models were trained on (same data fingerprint), else DataError. An ensemble's
    members must be one configuration trained with different seeds on the same data: any other
    difference or a repeated seed raises ConfigError naming it. `mixed=True` allows members that
    also differ in model and training settings (e.g. window length or width; each scores with its
    own), as long as they are one model type trained on the same data settings; the differences
    are returned per member, and only a member identical to another one is refused."""
    from bert4rec.artifacts import load_bundle
    from bert4rec.errors import ConfigError, DataError
    from bert4rec.evaluation.results import seed_differences
    from bert4rec.evaluation.scoring import ENSEMBLE_COMBINES, EnsembleScorer

    if combine not in ENSEMBLE_COMBINES:
        raise ConfigError(f"combine must be one of {', '.join(ENSEMBLE_COMBINES)}, got {combine!r}")
    if which not in ("val", "test"):
        raise ConfigError(f"which must be 'val' or 'test', got {which!r}")
    if not bundle_paths:
        raise ConfigError("give at least one model bundle to evaluate")
    bundles = [load_bundle(Path(p)) for p in bundle_paths]
    first = bundles[0]
    configs = [b.config.model_dump(mode="json") for b in bundles]
    first_config = configs[0]
    seeds = [b.config.train.seed for b in bundles]
    if not mixed and len(set(seeds)) != len(seeds):
        raise ConfigError(f"ensemble members repeat a train.seed ({seeds}): each member needs its own")
    differences = [seed_differences(first_config, c) for c in configs] if len(bundles) > 1 else []
    for i, (member, bundle) in enumerate(zip(bundle_paths, bundles, strict=True)):
        differ = differences[i] if differences else []
        if mixed:
            if bundle.config.model_type != first.config.model_type:
                raise ConfigError(
                    f"{member}: a {bundle.config.model_type} model, {bundle_paths[0]} a "
                    f"{first.config.model_type}: a mixed ensemble's members are one model type"
                )
            if bad := [d for d in differ if d.split(".")[0] in ("data", "eval")]:
                raise ConfigError(
                    f"{member}: differs from {bundle_paths[0]} in {', '.join(bad[:5])}; a mixed "
                    "ensemble's members may differ in model and training settings, not in data or "
                    "evaluation settings"
                )
            if same := [str(bundle_paths[j]) for j in range(i) if configs[j] == configs[i]]:
                raise ConfigError(f"{member}: the same configuration and seed as {same[0]}")
        elif differ:
            raise ConfigError(
                f"{member}: differs from {bundle_paths[0]} in more than train.seed "
                f"({', '.join(differ[:5])}); an ensemble's members are one configuration trained "
                "with several seeds (a mixed ensemble allows more)"
            )
        if bundle.run.get("data_fingerprint") != first.run.get("data_fingerprint"):
            raise DataError(
                f"{member}: trained on other data than {bundle_paths[0]} (data fingerprints differ)"
            )
    data_update: dict[str, Any] = {}
    if data_dir is not None:
        data_update["data_dir"] = Path(data_dir)
    if path is not None:
        data_update.update(dataset="file", path=Path(path))
    cfg = first.config.model_copy(update={"data": first.config.data.model_copy(update=data_update)})
    prepared = prepare(cfg)
    expected = first.run.get("data_fingerprint")
    if expected and prepared.split.fingerprint != expected:
        raise DataError(
            f"{cfg.data.path or cfg.data.data_dir or cfg.data.dataset}: not the data the model was "
            f"trained on (fingerprint {prepared.split.fingerprint}, model {expected}); evaluate on the "
            "same data or retrain"
        )
    genres = item_genres(prepared.interactions.items, prepared.split.vocab, cfg.eval.genre_column)
    scorer: Scorer
    name: str
    mode: str | None
    if len(bundles) == 1:
        name, mode = cfg.model_type, None
        scorer = TransformerScorer(first.model, name=name)
    else:
        name, mode = f"{cfg.model_type}_ensemble", combine
        scorer = EnsembleScorer([TransformerScorer(b.model) for b in bundles], name=name, combine=combine)
    start = time.perf_counter()
    metrics = Evaluator(prepared.split, cfg.eval, genres).evaluate(scorer, which=cast("Split", which))
    return SavedEvaluation(
        model=name,
        dataset=dataset_name(cfg),
        which=which,
        metrics=metrics,
        config=first_config,
        member_seeds=seeds,
        combine=mode,
        run=run_metadata(first_config, seeds[0], prepared.split.fingerprint, prepared.split.stats),
        eval_seconds=round(time.perf_counter() - start, 3),
        train_seconds=_summed_train_seconds(bundles),
        member_differences=differences,
    )


def _summed_train_seconds(bundles: Sequence[Bundle]) -> float | None:
    """The bundles' `run.json` train_seconds summed; None if any is missing or not a finite number
    >= 0 (a bundle is untrusted input: a bad value is ignored, not trusted or fatal)."""
    total = 0.0
    for bundle in bundles:
        value = bundle.run.get("train_seconds")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not math.isfinite(value) or value < 0:
            return None
        total += float(value)
    return round(total, 2)


def compare(
    model_types: list[str],
    cfg: ExperimentConfig,
    out_dir: Path,
    *,
    prepared: Prepared | None = None,
    resume: bool = False,
    progress: bool = True,
    results_name: str = "results",
) -> tuple[list[ModelRun], Path]:
    """Train and evaluate several models on the same split; write one JSON per model and a markdown table.

    Under DDP only global rank 0 writes; the other processes return the path rank 0 writes to.
    """
    prepared = prepared or prepare(cfg)
    runs = [
        train_and_evaluate(m, cfg, prepared, out_dir, resume=resume, progress=progress) for m in model_types
    ]
    if not all(r.is_global_zero for r in runs):
        return runs, Path(out_dir) / "results" / f"{results_name}.md"
    _, table = write_records([r.record for r in runs], Path(out_dir) / "results", results_name)
    return runs, table
