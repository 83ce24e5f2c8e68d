"""Validated configuration: one pydantic model per stage, `extra="forbid"` everywhere.

An `ExperimentConfig` bundles them; presets are partial dictionaries merged over the defaults,
so every value a run used is visible in its saved config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bert4rec.errors import ConfigError, closest_name


class _Strict(BaseModel):
    # allow_inf_nan=False: a learning rate (or any float) of Infinity or NaN is an error, not a value
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


DatasetName = Literal["ml-1m", "ml-100k", "ml-20m", "ml-25m", "file", "generated"]


class DataConfig(_Strict):
    """Where interactions come from and how they are cleaned."""

    dataset: DatasetName = Field(
        default="ml-1m",
        description="A MovieLens set, 'file' (your own data.path) or 'generated' (demo data).",
    )
    data_dir: Path | None = Field(
        default=None,
        description="Folder with an existing copy of the dataset; else $BERT4REC_DATA_DIR, else the cache.",
    )
    path: Path | None = Field(
        default=None, description="Interactions file (CSV/TSV/Parquet) for dataset='file'."
    )
    items_path: Path | None = Field(
        default=None, description="Optional item metadata file for dataset='file'."
    )
    user_col: str = Field(
        default="user_id", description="User id column of data.path (the spec's user_column)."
    )
    item_col: str = Field(
        default="item_id", description="Item id column of data.path (the spec's item_column)."
    )
    time_col: str | None = Field(
        default="timestamp",
        description="Timestamp column (numbers or ISO 8601) ordering each user's items; None: row order.",
    )
    rating_col: str | None = Field(default=None, description="Optional rating column (for data.min_rating).")
    metadata_cols: list[str] = Field(
        default_factory=list,
        description="Item metadata columns (e.g. title, category, description): shown with recommendations, "
        "usable as meta.<column> filters and for text cold start.",
    )
    display_col: str | None = Field(
        default=None, description="Column with a human-readable item label (default: 'title' when present)."
    )
    separator: str | None = Field(
        default=None, description="CSV separator; guessed from the extension if None."
    )
    column_names: list[str] | None = Field(
        default=None,
        description="Names for the columns of a header-less text file (its first line is data).",
    )
    min_rating: float | None = Field(default=None, description="Keep interactions with rating >= this.")
    min_user_interactions: int = Field(default=5, ge=1, description="Drop users with fewer interactions.")
    min_item_interactions: int = Field(default=5, ge=1, description="Drop items with fewer interactions.")
    duplicates: Literal["drop", "keep", "error"] = Field(
        default="drop",
        description="Exact duplicate (user, item, timestamp) rows: drop them (counted), keep them, or fail.",
    )
    val_users: int | None = Field(
        default=None,
        ge=1,
        description="Users whose second-to-last item is held out for validation; None: every user "
        "(leave-two-out). With N, a fixed random sample of N users (seed 0) keeps it out, and every "
        "other user trains on it (their most recent transition), as aprec and the SASRec/BERT4Rec "
        "replicability studies split; the test item never enters training either way.",
    )
    # generated demo data
    n_users: int = Field(default=600, ge=2, description="Users of the generated demo data.")
    n_items: int = Field(default=300, ge=4, description="Items of the generated demo data.")
    seed: int = Field(default=0, description="Seed of the generated demo data.")

    @model_validator(mode="after")
    def _file_needs_path(self) -> DataConfig:
        if self.dataset == "file" and self.path is None:
            raise ValueError("dataset='file' needs `path` (the interactions CSV/TSV/Parquet file)")
        return self


class ModelConfig(_Strict):
    """Transformer backbone shared by BERT4Rec (bidirectional) and SASRec (causal)."""

    max_len: int = Field(
        default=200, ge=2, description="Past interactions per user the model reads (max_sequence_length)."
    )
    hidden_size: int = Field(default=64, ge=2, description="Embedding width; must be divisible by num_heads.")
    num_layers: int = Field(default=2, ge=1, description="Transformer layers (model_depth).")
    num_heads: int = Field(default=2, ge=1, description="Attention heads per layer.")
    ffn_multiplier: int = Field(
        default=4, ge=1, description="Feed-forward width as a multiple of hidden_size."
    )
    block: Literal["pre_ln", "ligr"] = Field(
        default="pre_ln",
        description="pre_ln: pre-LayerNorm Transformer block (GELU feed-forward); ligr: LiGR block "
        "as in eSASRec (RecSys 2025): each sub-layer's output is scaled by a sigmoid gate computed "
        "from the block input before it joins the residual stream, and the feed-forward is SwiGLU.",
    )
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="Dropout on embeddings and sub-layers.")
    attention_dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Off by default: its random mask costs ~28% of a CPU step."
    )
    tie_weights: bool = Field(
        default=True, description="Share the input and output item embeddings (weight tying)."
    )
    use_user_embedding: bool = Field(
        default=False, description="Add a learned vector per trained user (guest sessions get none)."
    )
    content_fusion: bool | None = Field(
        default=None,
        description="Add a learned projection of each item's text vector (title + metadata, "
        "all-MiniLM-L6-v2) to its ID embedding, so items with few or no interactions, and items "
        "added after training, can be recommended; needs item metadata. None (the default) turns it "
        "on when the data names item text: data.metadata_cols, data.display_col or data.items_path.",
    )
    content_dim: int = Field(default=384, ge=1, description="Width of the item text vectors (MiniLM: 384).")
    id_dropout: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Content fusion: at each training step, the share of items (with text) whose ID "
        "embedding is dropped, in the input and in the output softmax, so that the text part alone "
        "learns to carry an item, as it must for items added after training. Off by default: on "
        "ML-1M zero-day items, 0.25 lowered warm accuracy and, with score calibration, gave no "
        "better trade between new and known items (benchmarks/results/cold-start/zero_day_ml-1m.md).",
    )
    new_item_exposure: float = Field(
        default=0.98,
        ge=0.0,
        le=1.0,
        description="Content fusion: where an item added after training scores, as a quantile of the "
        "trained items (0: the lowest, 1: the highest; see new_item_calibration). Higher puts new "
        "items in more lists. 0.98 is the lowest setting that recommended ML-1M zero-day items "
        "(cold HR@10 >= 0.03) for both held-out seeds while known items kept their accuracy "
        "(benchmarks/results/cold-start/zero_day_ml-1m*.md).",
    )
    new_item_calibration: Literal["score", "bias"] = Field(
        default="score",
        description="How new_item_exposure places a new item: score = its output bias makes its "
        "average score over a fixed sample of users the exposure quantile of the trained items' "
        "average scores; bias = its output bias is the exposure quantile of the trained items' biases.",
    )

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ModelConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads}); "
                f"try num_heads in {[h for h in range(1, 9) if self.hidden_size % h == 0]}"
            )
        return self


Precision = Literal["32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"]
TrackerName = Literal["csv", "mlflow", "wandb"]


class TrainConfig(_Strict):
    """Optimisation and the Cloze (masked item) objective."""

    epochs: int = Field(default=50, ge=1, description="Passes over the training windows (training_epochs).")
    batch_size: int = Field(default=128, ge=1, description="Training windows per step.")
    lr: float = Field(
        default=1e-3,
        gt=0.0,
        description="AdamW peak learning rate (warmup, then cosine to train.final_lr_ratio of it).",
    )
    weight_decay: float = Field(
        default=0.01, ge=0.0, description="AdamW weight decay (not on biases, norms or embeddings)."
    )
    warmup_steps: int = Field(default=100, ge=0, description="Linear learning-rate warmup, in steps.")
    final_lr_ratio: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Where the cosine schedule ends, as a share of train.lr (0: decay to zero; 1: a "
        "constant rate after warmup). A time budget fits the schedule to the steps that fit in it.",
    )
    grad_clip: float | None = Field(
        default=5.0,
        gt=0.0,
        description="Clip the gradient norm to this (None = off); keep it against divergence.",
    )
    seed: int = Field(default=42, description="Seed of initialisation, masking, shuffling and dropout.")
    # Cloze masking (BERT4Rec only)
    mask_prob: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="Share of items hidden in the Cloze task (masking_ratio)."
    )
    mask_token_prob: float = Field(default=0.8, ge=0.0, le=1.0, description="Masked positions -> [MASK].")
    random_token_prob: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Masked positions -> random item."
    )
    last_item_mask_prob: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Share of training samples that mask only the last item."
    )
    input_mask_prob: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="SASRec only: share of training input items replaced by [MASK] (BERT4Rec's Cloze "
        "noise as an augmentation of the causal model; the next-item labels stay); 0 = off.",
    )
    # sliding windows over long histories
    window_step: int | None = Field(default=None, ge=1, description="Stride between windows; None = max_len.")
    windows_per_user: int | None = Field(
        default=None,
        ge=1,
        description="Keep only each user's most recent windows (1: the last max_len items, as RecTools "
        "trains); None = all windows back to the oldest items.",
    )
    windows_cover_start: bool = Field(
        default=False,
        description="Add a window over the first max_len items of each longer history: the stride "
        "otherwise leaves up to max_len - 1 of the oldest items out of training.",
    )
    bucket_by_length: bool = Field(
        default=True,
        description="Batch windows of similar length so short histories are not padded to max_len.",
    )
    # loss over the catalog (validation and inference always rank all items)
    loss: Literal["full", "sampled"] = Field(
        default="full",
        description="full: softmax over all items; sampled: softmax over the target and "
        "n_negatives_train shared sampled items with logQ correction, for large catalogs.",
    )
    loss_weighting: Literal["batch", "position"] = Field(
        default="batch",
        description="batch: each batch's loss is the mean over its labelled positions (with length "
        "buckets, a position in a batch of short windows then weighs more than one in a batch of "
        "long ones); position: the batch's summed loss over the running mean number of labelled "
        "positions per batch, so every position weighs the same wherever it is batched.",
    )
    n_negatives_train: int = Field(
        default=1024, ge=1, description="Negatives drawn per training batch when loss='sampled'."
    )
    label_smoothing: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Train towards 1 - s on the next item and s spread over every item (the sampled "
        "loss: over the batch's candidates); 0 = plain cross-entropy.",
    )
    negative_sampling: Literal["uniform", "popularity"] = Field(
        default="popularity",
        description="Where the sampled loss draws negatives from: training popularity or uniform.",
    )
    ema_decay: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="Keep an exponential moving average of the weights (decay per optimizer step, e.g. "
        "0.99) and validate, checkpoint and return it instead of the raw weights; None = off.",
    )
    patience: int | None = Field(
        default=5,
        ge=1,
        description="Early stopping patience on val ndcg@10 (epochs); None = no early stopping, "
        "train all `epochs` (the time budget, train.max_minutes, still applies).",
    )
    max_minutes: float | None = Field(
        default=None,
        gt=0.0,
        description="Wall-clock training budget, building the starting weights "
        "(train.item_embedding_init) included.",
    )
    min_steps: int | None = Field(
        default=None,
        ge=1,
        description="Train at least this many optimizer steps, even past train.max_minutes or early "
        "stopping: a wall-clock budget alone gives a busier machine a worse model.",
    )
    output_bias_init: Literal["zeros", "log_popularity"] = Field(
        default="zeros",
        description="Initial output bias of each item: zeros (uniform start) or the log of its "
        "training popularity (the model starts at the popularity ranking and leaves it sooner).",
    )
    item_embedding_init: Literal["random", "mf"] = Field(
        default="random",
        description="Initial item ID embeddings: random (truncated normal) or mf: the item factors "
        "of ALS matrix factorisation on the training data (baselines.mf settings, factors = "
        "model.hidden_size, seed = train.seed), rescaled to the random init's spread, so training "
        "starts from items that co-occur lying close together.",
    )
    limit_val_users: int | None = Field(default=None, ge=1, description="Validate on a fixed user subset.")
    val_every_n_epochs: int = Field(
        default=1,
        ge=1,
        description="Validate (val ndcg@10 on the validation users) after every N-th epoch and "
        "always after the last one, also when train.max_minutes cuts the run short; only validated "
        "epochs can become the kept checkpoint or enter the history. N > 1 leaves more of a time "
        "budget to training. Early stopping's patience still counts epochs.",
    )
    num_threads: int | None = Field(
        default=None, ge=1, description="torch CPU threads (None: torch's default)."
    )
    accelerator: str = Field(default="auto", description="Lightning accelerator: auto, cpu, gpu, mps.")
    devices: int | str = Field(default=1, description="Processes (CPU) or GPUs per node, as in Lightning.")
    strategy: str = Field(default="auto", description="Lightning strategy: auto, ddp, ddp_spawn, ...")
    num_nodes: int = Field(default=1, ge=1, description="Machines (torchrun / SLURM); see the README.")
    precision: Precision = Field(
        default="32-true", description="Lightning precision; bf16-mixed on recent GPUs trains faster."
    )
    logger: TrackerName = Field(
        default="csv",
        description="Experiment tracker beside the CSV logs: csv (only), mlflow (sqlite in the run "
        "folder) or wandb (offline).",
    )

    @model_validator(mode="after")
    def _replacement_probs(self) -> TrainConfig:
        if self.mask_token_prob + self.random_token_prob > 1.0 + 1e-9:
            raise ValueError(
                f"mask_token_prob ({self.mask_token_prob}) + random_token_prob ({self.random_token_prob}) "
                "must be <= 1 (the rest keeps the original item)"
            )
        return self


class EvalConfig(_Strict):
    """Leave-one-out evaluation settings."""

    ks: list[int] = Field(
        default_factory=lambda: [1, 5, 10, 20],
        description="Cut-offs k of hr@k, ndcg@k, recall@k, precision@k.",
    )
    n_negatives: int = Field(
        default=100, ge=1, description="Negatives per user for the sampled metrics (beside full ranking)."
    )
    filter_seen: bool = Field(
        default=True, description="Exclude items of the input history from the ranking."
    )
    seed: int = Field(default=2024, description="Seed of the sampled negatives.")
    batch_size: int = Field(default=512, ge=1, description="Users scored per evaluation batch.")
    genre_column: str | None = Field(
        default="genres",
        description="Item column with each item's genres ('|'-separated) for genre_precision@k / "
        "genre_ndcg@k; the default is skipped when the data lacks it, null turns genre metrics off.",
    )

    @model_validator(mode="after")
    def _positive_ks(self) -> EvalConfig:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"ks must be a non-empty list of positive integers, got {self.ks}")
        return self


class ItemKNNConfig(_Strict):
    """Item-based nearest neighbours (`bert4rec.models.baselines.ItemKNNRecommender`)."""

    k_neighbors: int = Field(default=100, ge=1, description="Neighbours kept per item.")
    shrink: float = Field(
        default=10.0, ge=0.0, description="Added to the cosine denominator: damps similarities of rare items."
    )
    recency_decay: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="History item i of L gets weight decay**(L-1-i) (the most recent gets 1); None = all 1.",
    )


class MFConfig(_Strict):
    """Implicit-feedback matrix factorisation with ALS (`bert4rec.models.baselines.MFRecommender`)."""

    factors: int = Field(default=64, ge=1, description="Latent factors per user and item.")
    iterations: int = Field(default=15, ge=1, description="ALS sweeps (epochs) over users and items.")
    regularization: float = Field(default=0.01, ge=0.0, description="L2 regularisation of the factors.")
    alpha: float = Field(
        default=1.0,
        gt=0.0,
        description="Confidence of an observed interaction (C = alpha); 1 was best on ML-1M.",
    )
    seed: int = Field(default=42, description="Seed of the factors' initialisation.")
    num_threads: int = Field(default=0, ge=0, description="implicit's OpenMP threads; 0 = all cores.")


class BaselinesConfig(_Strict):
    """Settings of the baseline models (popularity has none)."""

    item_knn: ItemKNNConfig = Field(default_factory=ItemKNNConfig)
    mf: MFConfig = Field(default_factory=MFConfig)


# The one list of model names: the CLI, config validation, the pipeline's registries and the
# report's order all read these (bert4rec.models maps each name to its class)
TransformerType = Literal["bert4rec", "sasrec"]
BaselineType = Literal["popularity", "item_knn", "mf"]
ModelType = Literal[TransformerType, BaselineType]
TRANSFORMER_TYPES: tuple[str, ...] = get_args(TransformerType)
BASELINE_TYPES: tuple[str, ...] = get_args(BaselineType)
MODEL_TYPES: tuple[str, ...] = (*TRANSFORMER_TYPES, *BASELINE_TYPES)


class ExperimentConfig(_Strict):
    """Everything one run needs; saved next to its results and inside its artifact."""

    model_type: ModelType = Field(default="bert4rec", description="The model this config trains.")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig)
    per_model: dict[ModelType, dict[str, Any]] = Field(
        default_factory=dict,
        description="Used only when training that model, e.g. {'bert4rec': {'train': {'lr': 4e-3}}}",
    )

    @model_validator(mode="after")
    def _text_turns_fusion_on(self) -> ExperimentConfig:
        """`model.content_fusion=None` becomes True when the data names item text columns (the hybrid
        engine is one switch: give metadata), else False; the saved config holds the decision."""
        if self.model.content_fusion is None:
            data = self.data
            named = bool(data.metadata_cols) or data.display_col is not None or data.items_path is not None
            self.model.content_fusion = named
        return self

    @model_validator(mode="after")
    def _per_model_overrides_are_valid(self) -> ExperimentConfig:
        for model_type, overrides in self.per_model.items():
            # a baseline reads only its baselines.* settings (and eval): anything else would change nothing
            ignored = sorted(set(overrides) - {"baselines", "eval"}) if model_type in BASELINE_TYPES else []
            if ignored:
                raise ValueError(
                    f"per_model.{model_type}.{ignored[0]} changes nothing for the {model_type} baseline; "
                    f"set its own settings (baselines.{model_type}.<field>)"
                    if model_type != "popularity"
                    else f"per_model.popularity.{ignored[0]} changes nothing: popularity has no settings"
                )
            self.for_model(model_type)  # raises ValidationError naming the bad field
        return self

    def for_model(self, model_type: ModelType) -> ExperimentConfig:
        """This config with `model_type` set and that model's `per_model` overrides applied."""
        merged = deep_merge(self.model_dump(exclude={"per_model"}), self.per_model.get(model_type, {}))
        merged["model_type"] = model_type
        return ExperimentConfig.model_validate(merged)


# Presets only set what differs from the defaults. Values follow the BERT4Rec paper (ML-1M: max_len
# 200, mask 0.2) and common practice for the other domains, except where a CPU-budget measurement
# says otherwise (ml-1m per_model).
PRESETS: dict[str, dict[str, Any]] = {
    "ml-1m": {
        "data": {"dataset": "ml-1m"},
        "model": {"max_len": 200, "hidden_size": 64, "num_layers": 2, "num_heads": 2, "dropout": 0.1},
        # patience 10: validation NDCG@10 is noisy and BERT4Rec improves in steps; the output bias
        # starts at log-popularity and the item embeddings from ALS factors: both models leave
        # their initial plateau sooner (docs/first-run.md) and end higher (docs/data.md)
        "train": {
            "mask_prob": 0.2,
            "batch_size": 128,
            "lr": 1e-3,
            "epochs": 100,
            "patience": 10,
            "output_bias_init": "log_popularity",
            "item_embedding_init": "mf",
        },
        # per-model settings that measured best on a 2-core CPU (docs/data.md: why the presets ...)
        "per_model": {
            "bert4rec": {"model": {"max_len": 50}, "train": {"lr": 4e-3}},
            "sasrec": {
                "model": {"hidden_size": 128},
                "train": {"lr": 2e-3, "loss_weighting": "position", "batch_size": 64},
            },
        },
    },
    # The spec's use-case presets carry its values for hidden_size / num_heads / num_layers /
    # max_len / epochs (SPEC.md: video 128/4/3/50/20, e-commerce 64/2/2/20/15, music 96/3/3/30/25);
    # the masking, batch and cleaning settings are ours, for each use case's session shape
    "video-streaming": {  # "next episode": long watch histories, strong sequential signal
        "model": {"max_len": 50, "hidden_size": 128, "num_layers": 3, "num_heads": 4},
        "train": {"epochs": 20, "mask_prob": 0.2, "batch_size": 128},
    },
    "ecommerce-session": {  # short sparse sessions (like Amazon Beauty): short windows, heavy masking
        "data": {"min_user_interactions": 3, "min_item_interactions": 3},
        "model": {"max_len": 20, "hidden_size": 64, "num_layers": 2, "num_heads": 2, "dropout": 0.3},
        "train": {"epochs": 15, "mask_prob": 0.6, "batch_size": 256, "last_item_mask_prob": 0.2},
    },
    "music-playlist": {  # next song in a queue: medium sequences, many repeats
        "data": {"duplicates": "keep"},
        "model": {"max_len": 30, "hidden_size": 96, "num_layers": 3, "num_heads": 3},
        "train": {"epochs": 25, "mask_prob": 0.4, "batch_size": 256},
    },
    # BERT4Rec's preprocessed Amazon Beauty: `user item` lines in time order, no header or timestamps
    "beauty": {
        "data": {
            "dataset": "file",
            "column_names": ["user_id", "item_id"],
            "separator": " ",
            "time_col": None,
            "min_user_interactions": 5,
            "min_item_interactions": 1,  # the paper keeps all 54,542 items
        },
        "model": {"max_len": 50, "hidden_size": 64, "num_layers": 2, "num_heads": 2, "dropout": 0.3},
        # 54,542 items: a sampled softmax and a fixed validation subset keep epochs affordable;
        # measurements behind these settings: docs/data.md: why the presets are set this way
        "train": {
            "mask_prob": 0.6,
            "batch_size": 256,
            "last_item_mask_prob": 0.2,
            "lr": 2e-3,
            "loss": "sampled",
            "n_negatives_train": 1024,
            "limit_val_users": 10000,
        },
        "per_model": {
            "bert4rec": {
                # 80 epochs trained to the end (no early stopping): validation rises most while the
                # cosine schedule decays, so early stopping cut runs before their best epochs
                "train": {
                    "lr": 4e-3,
                    "loss_weighting": "position",
                    "item_embedding_init": "mf",
                    "label_smoothing": 0.1,
                    "epochs": 80,
                    "patience": None,
                }
            },
            # patience 10, as every three-seed Beauty SASRec row ran (docs/benchmarks/beauty.md)
            "sasrec": {"train": {"loss": "full", "loss_weighting": "position", "patience": 10}},
        },
    },
    "demo": {  # generated data, trains in seconds
        "data": {"dataset": "generated"},
        "model": {"max_len": 30, "hidden_size": 32, "num_layers": 1, "num_heads": 2, "dropout": 0.1},
        # a high learning rate gets BERT4Rec off its early plateau within a few hundred steps
        "train": {"epochs": 30, "batch_size": 64, "lr": 1e-2, "warmup_steps": 20, "patience": 8},
    },
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _without_keys(values: dict[str, Any], overridden: dict[str, Any]) -> dict[str, Any]:
    """`values` without the leaf settings that `overridden` also sets (nested dicts compared per key)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(overridden.get(key), dict):
            out[key] = _without_keys(value, overridden[key])
        elif key not in overridden:
            out[key] = value
    return out


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "config"
        line = f"{field}: {e['msg']}" + (f" (got {e['input']!r})" if "input" in e else "")
        if e["type"] == "extra_forbidden":
            line += closest_field_hint(e["loc"])
        lines.append(line)
    return "invalid configuration: " + "; ".join(lines)


def _section_model(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model that holds the field at `loc` (("train", "epoch") -> TrainConfig), or None."""
    model: type[BaseModel] = ExperimentConfig
    for part in loc[:-1]:
        info = model.model_fields.get(str(part))
        annotation = info.annotation if info is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def closest_field_hint(loc: tuple[Any, ...]) -> str:
    """'; did you mean train.epochs?' for a mistyped field such as ("train", "epoch") (difflib's closest
    valid name in that section), or '' when no valid name is close."""
    model = _section_model(loc)
    if model is None or not loc:
        return ""
    match = closest_name(str(loc[-1]), model.model_fields)
    if match is None:
        return ""
    return "; did you mean " + ".".join([*(str(p) for p in loc[:-1]), match]) + "?"


def build_config(preset: str | None = None, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Merge a named preset and overrides over the defaults and validate the result.

    Raises `ConfigError` naming the unknown preset or each invalid field.
    """
    raw: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(sorted(PRESETS))}")
        raw = deep_merge(raw, PRESETS[preset])
        if overrides:
            # the user's explicit settings (e.g. --set model.max_len=200) beat the preset's per-model
            # defaults; a per_model override the user gives beats both
            raw["per_model"] = {
                model: _without_keys(values, overrides) for model, values in raw.get("per_model", {}).items()
            }
    if overrides:
        raw = deep_merge(raw, overrides)
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err)) from None
    from bert4rec.resources import check_config_memory

    for model_type in dict.fromkeys([cfg.model_type, *cfg.per_model]):
        check_config_memory(cfg.for_model(model_type))  # sizes that cannot fit: refused before allocating
    return cfg


def option_overrides(
    sets: list[str], data_dir: str | Path | None = None, max_minutes: float | None = None
) -> dict[str, Any]:
    """Overrides from command-line style options: `section.field=value` pairs, a data folder and a
    training time budget (the options every CLI command and benchmark script shares)."""
    overrides = parse_overrides(sets)
    if data_dir is not None:
        overrides = deep_merge(overrides, {"data": {"data_dir": str(data_dir)}})
    if max_minutes:
        overrides = deep_merge(overrides, {"train": {"max_minutes": max_minutes}})
    return overrides


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn CLI `section.field=value` strings into a nested dict (values parsed as JSON when possible)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} must look like section.field=value, e.g. train.epochs=5")
        key, value = pair.split("=", 1)
        try:
            parsed: Any = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            parsed = value
        parts = [part.strip() for part in key.strip().split(".")]
        if not all(parts):
            raise ConfigError(f"override {pair!r} has an empty field name; use section.field=value")
        node = out
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                section = ".".join(parts[: depth + 1])
                raise ConfigError(
                    f"override {pair!r} sets a field of {section}, but another override set {section} "
                    f"itself to {node!r}; {section} is a section: set its fields ({section}.field=value)"
                )
        if isinstance(node.get(parts[-1]), dict) and not isinstance(parsed, dict):
            raise ConfigError(
                f"override {pair!r} replaces the section {key.strip()} whose fields other overrides set; "
                f"set its fields instead ({key.strip()}.field=value)"
            )
        node[parts[-1]] = parsed
    return out


def load_config(path: Path) -> ExperimentConfig:
    """Read a saved config JSON (as written in run folders and artifacts)."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"config file {path} is not valid JSON: {err}") from None
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{path}: " + _format_validation_error(err)) from None


def _type_name(annotation: Any) -> str:
    """A readable type: `int`, `float | None`, `Literal['full', 'sampled']`, `list[int]`."""
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("pathlib.", "").replace("NoneType", "None")


def describe_fields(preset: str | None = None, model_type: ModelType | None = None) -> list[dict[str, Any]]:
    """Every config field, one row each: `field` (dotted, e.g. "train.epochs"), `type`, `default`,
    `description` (from the pydantic models), and with a `preset` its `value` there (for `model_type`
    with that model's per_model overrides applied). Raises ConfigError for an unknown preset."""
    chosen: ExperimentConfig | None = None
    if preset is not None:
        # a preset for a file format (beauty) names no file: show a placeholder path
        needs_path = PRESETS.get(preset, {}).get("data", {}).get("dataset") == "file"
        chosen = build_config(preset, {"data": {"path": "<data.path>"}} if needs_path else None)
        if model_type is not None:
            chosen = chosen.for_model(model_type)
    elif model_type is not None:
        chosen = ExperimentConfig().for_model(model_type)
    rows: list[dict[str, Any]] = []

    def walk(model: type[BaseModel], prefix: str, values: BaseModel | None) -> None:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            value = getattr(values, name) if values is not None else None
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name}.", value)
                continue
            row = {
                "field": prefix + name,
                "type": _type_name(annotation),
                "default": info.get_default(call_default_factory=True),
                "description": info.description or "",
            }
            if values is not None:
                row["value"] = value
            rows.append(row)

    walk(ExperimentConfig, "", chosen)
    return rows
