"""`bert4rec` command line: prepare | train | evaluate | recommend | compare | serve | items. A thin
shell over `bert4rec.pipeline`, `bert4rec.inference` and `bert4rec.evaluation`."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from bert4rec.config import (
    MODEL_TYPES,
    PRESETS,
    ExperimentConfig,
    build_config,
    deep_merge,
    load_config,
    parse_overrides,
)
from bert4rec.errors import Bert4RecError

# = bert4rec.inference.index.DEFAULT_THRESHOLD (not imported here: keeps `--help` fast)
DEFAULT_INDEX_THRESHOLD = 200_000

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Sequential recommendation with BERT4Rec.")
# Piped output (logs, CI, tests) gets a wide console so tables are not truncated to 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=200)

PresetOpt = Annotated[str | None, typer.Option("--preset", "-p", help=f"One of: {', '.join(PRESETS)}.")]
DatasetOpt = Annotated[
    str | None, typer.Option("--dataset", help="ml-1m | ml-100k | ml-20m | ml-25m | file | generated.")
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Folder with a local copy of the dataset (else $BERT4REC_DATA_DIR, else download)."
    ),
]
PathOpt = Annotated[
    Path | None, typer.Option("--path", help="Interactions CSV/TSV/Parquet (implies --dataset file).")
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="A saved config.json to start from.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Override a field: section.field=value, e.g. train.epochs=5 (repeatable)."
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run folder (checkpoints, logs, model, results).")]
LoggerOpt = Annotated[
    str | None,
    typer.Option(
        "--logger",
        help="Experiment tracker beside the CSV logs: csv | mlflow (sqlite in --out) | wandb (offline).",
    ),
]
DevicesOpt = Annotated[
    str | None,
    typer.Option("--devices", help="Processes (CPU) or GPUs per node for Lightning, e.g. 2 (train.devices)."),
]
StrategyOpt = Annotated[
    str | None, typer.Option("--strategy", help="Lightning strategy, e.g. ddp (train.strategy).")
]
PayloadOpt = Annotated[
    Path | None,
    typer.Option(
        "--payload",
        help="A training payload (JSON or YAML) with the spec's field names (docs/training-payload.md); "
        "replaces --preset/--dataset/--path/--config, --set still applies over it.",
    ),
]
ProgressFileOpt = Annotated[
    Path | None,
    typer.Option("--progress-file", help="Keep epoch, step, elapsed s and val NDCG@10 in this JSON file."),
]


def _train_sets(logger: str | None, devices: str | None, strategy: str | None) -> list[str]:
    """The tracking / scale-out flags as `--set` overrides (they win over --set)."""
    pairs = {"logger": logger, "devices": devices, "strategy": strategy}
    return [f"train.{key}={value}" for key, value in pairs.items() if value is not None]


def _config(
    preset: str | None,
    dataset: str | None,
    data_dir: Path | None,
    path: Path | None,
    config: Path | None,
    sets: list[str] | None,
) -> ExperimentConfig:
    overrides: dict[str, Any] = load_config(config).model_dump(mode="json") if config else {}
    data: dict[str, Any] = {}
    if dataset:
        data["dataset"] = dataset
    if path:
        data.update(dataset="file", path=str(path))
    if data_dir:
        data["data_dir"] = str(data_dir)
    overrides = deep_merge(overrides, {"data": data} if data else {})
    overrides = deep_merge(overrides, parse_overrides(sets or []))
    return build_config(preset, overrides)


def _stats_table(stats: dict[str, Any], seconds: float) -> Table:
    table = Table(title=f"Dataset statistics (prepared in {seconds:.2f} s)")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in stats.items():
        table.add_row(escape(str(key)), f"{value:,}" if isinstance(value, int) else escape(str(value)))
    return table


def _metrics_table(
    records: list[dict[str, Any]],
    ks: tuple[int, ...] = (10,),
    *,
    split: str = "Test",
    seconds: tuple[tuple[str, str], ...] = (("train s", "train_seconds"),),
) -> Table:
    """One row per record; `seconds` holds the (column label, record key) of each time column (a
    None value prints as "-")."""
    table = Table(title=f"{split} metrics (leave-one-out; sampled = 100 negatives, labelled)")
    cols = [("full", f"hr@{k}") for k in ks] + [("full", f"ndcg@{k}") for k in ks] + [("full", "mrr")]
    cols += [
        ("sampled_popularity", "hr@10"),
        ("sampled_popularity", "ndcg@10"),
        ("sampled_uniform", "hr@10"),
        ("sampled_uniform", "ndcg@10"),
    ]
    table.add_column("model")
    for mode, metric in cols:
        label = metric if mode == "full" else f"{metric} ({mode.replace('sampled_', 'sampled ')})"
        table.add_column(label, justify="right")
    # genre-level columns only when a record has them (the data has a genre column; docs/genre-metrics.md)
    genre_cols = [
        c for c in ("genre_precision@10", "genre_ndcg@10") if any(c in r["metrics"]["full"] for r in records)
    ]
    for col in genre_cols:
        table.add_column(
            col.replace("genre_precision", "genre P").replace("genre_ndcg", "genre NDCG"), justify="right"
        )
    table.add_column("coverage@10", justify="right")
    for label, _ in seconds:
        table.add_column(label, justify="right")
    for r in records:
        m = r["metrics"]
        table.add_row(
            escape(str(r["model"])),
            *[f"{m[mode][metric]:.4f}" for mode, metric in cols],
            *[f"{m['full'][c]:.4f}" if c in m["full"] else "-" for c in genre_cols],
            f"{m.get('coverage@10', float('nan')):.3f}",
            *["-" if r.get(key) is None else f"{r[key]:.1f}" for _, key in seconds],
        )
    return table


def _recommendation_table(title: str, recs: Any) -> Table:
    """`title` is markup the caller escaped; every item field is data and printed as it is."""
    table = Table(title=f"{title} (path: {recs.path}{', history truncated' if recs.truncated else ''})")
    for col in ("rank", "item_id", "title", "details", "score"):
        table.add_column(col, justify="right" if col in ("rank", "score") else "left")
    for r in recs.items:
        details = ", ".join(f"{k}: {v}" for k, v in r.metadata.items())
        table.add_row(
            str(r.rank), escape(str(r.item_id)), escape(r.title or ""), escape(details), f"{r.score:.3f}"
        )
    return table


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )
    # Lightning sets its loggers to INFO (with their own handler) when first imported: import it now
    # so the levels below stick, and let its messages reach only our handler (not printed twice)
    import lightning.pytorch  # noqa: F401

    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(noisy)
        logger.setLevel(logging.INFO if verbose else logging.WARNING)
        logger.handlers.clear()


def _fail(err: Exception) -> None:
    """One line (never wrapped, never read as markup: messages quote ids and paths), exit code 2."""
    message = " ".join(str(err).split()) or type(err).__name__
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code=2)


def _remove_if_empty(out: Path, existed: bool) -> None:
    """After a failed command: remove the run folder it created if it holds no file (a failed
    training keeps its checkpoints for --resume)."""
    if existed or not out.is_dir() or any(not p.is_dir() for p in out.rglob("*")):
        return
    try:
        for folder in sorted(out.rglob("*"), key=lambda p: -len(p.parts)):
            folder.rmdir()
        out.rmdir()
    except OSError:  # something appeared meanwhile: leave it
        pass


@app.command()
def prepare(
    preset: PresetOpt = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    path: PathOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    verbose: bool = False,
) -> None:
    """Load, clean and split a dataset; print its statistics."""
    _setup_logging(verbose)
    from bert4rec.pipeline import prepare as prepare_data

    try:
        cfg = _config(preset, dataset, data_dir, path, config, set_)
        prepared = prepare_data(cfg)
    except Bert4RecError as err:
        _fail(err)
    console.print(_stats_table(prepared.stats, prepared.seconds))
    console.print(f"data fingerprint: {prepared.split.fingerprint}")


def _setting(value: Any) -> str:
    """A config value as typed in Python (paths as plain text)."""
    return str(value) if isinstance(value, Path) else repr(value)


@app.command("config")
def config_fields(
    preset: PresetOpt = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Apply this model's per_model overrides (e.g. sasrec)."),
    ] = None,
    grep: Annotated[str | None, typer.Option(help="Only fields whose name contains this text.")] = None,
) -> None:
    """List every config field (for --set section.field=value) with its type, default and description;
    with --preset, also the preset's value."""
    from rich.markup import escape

    from bert4rec.config import describe_fields

    try:
        if model is not None and model not in MODEL_TYPES:
            raise Bert4RecError(f"unknown model {model!r}; choose from {', '.join(MODEL_TYPES)}")
        rows = describe_fields(preset, model)  # type: ignore[arg-type]  # checked above
    except Bert4RecError as err:
        _fail(err)
    shown = preset if model is None else f"{preset or 'defaults'}, {model}"
    table = Table(
        title="Config fields" + (f" ({shown})" if preset or model else ""),
        caption="value: blank where it is the default" if preset or model else None,
    )
    for col in ("field", "type", "default", *(["value"] if preset or model else []), "description"):
        table.add_column(col)
    for row in rows:
        if grep and grep not in row["field"]:
            continue
        cells = [row["field"], row["type"], _setting(row["default"])]
        if "value" in row:
            cells.append(_setting(row["value"]) if row["value"] != row["default"] else "")
        table.add_row(*(escape(c) for c in [*cells, row["description"]]))
    console.print(table)


@app.command()
def train(
    preset: PresetOpt = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    path: PathOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help=f"{' | '.join(MODEL_TYPES)} (default: the payload's, else bert4rec)"
        ),
    ] = None,
    payload: PayloadOpt = None,
    progress_file: ProgressFileOpt = None,
    out: OutOpt = Path("runs/latest"),
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in --out.")] = False,
    examples: Annotated[int, typer.Option(help="Show recommendations for this many users.")] = 2,
    logger: LoggerOpt = None,
    devices: DevicesOpt = None,
    strategy: StrategyOpt = None,
    progress: bool = True,
    verbose: bool = False,
) -> None:
    """Train BERT4Rec (or SASRec), evaluate on the test split, save the model, show recommendations."""
    if payload is not None:
        flags = {"--preset": preset, "--dataset": dataset, "--path": path, "--config": config}
        given = [flag for flag, value in flags.items() if value]
        from bert4rec.payload import load_payload

        try:
            if given:
                raise Bert4RecError(f"--payload sets the data and preset itself; drop {', '.join(given)}")
            model_type = load_payload(payload).model_type
            if model is not None and model != model_type:
                raise Bert4RecError(f"--model {model} contradicts the payload's model_type {model_type!r}")
        except Bert4RecError as err:
            _fail(err)
        model = model_type
    compare(
        preset,
        dataset,
        data_dir,
        path,
        config,
        set_,
        models=model or "bert4rec",
        payload=payload,
        progress_file=progress_file,
        out=out,
        resume=resume,
        examples=examples,
        logger=logger,
        devices=devices,
        strategy=strategy,
        progress=progress,
        verbose=verbose,
    )


@app.command()
def compare(
    preset: PresetOpt = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    path: PathOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    models: Annotated[str, typer.Option(help=f"Comma-separated: {','.join(MODEL_TYPES)}")] = ",".join(
        MODEL_TYPES
    ),
    out: OutOpt = Path("runs/compare"),
    payload: Annotated[Path | None, typer.Option(hidden=True)] = None,
    progress_file: Annotated[Path | None, typer.Option(hidden=True)] = None,
    resume: bool = False,
    examples: Annotated[int, typer.Option(help="Show recommendations for this many users.")] = 1,
    logger: LoggerOpt = None,
    devices: DevicesOpt = None,
    strategy: StrategyOpt = None,
    progress: bool = True,
    verbose: bool = False,
) -> None:
    """Train and evaluate several models on the same split and print one table.

    With `--devices N --strategy ddp` Lightning starts N - 1 more processes running this command;
    only global rank 0 prints, evaluates and writes results.
    """
    _setup_logging(verbose)
    from bert4rec.evaluation.results import write_records
    from bert4rec.pipeline import is_global_zero, train_and_evaluate
    from bert4rec.pipeline import prepare as prepare_data

    console.quiet = not is_global_zero()  # the other DDP processes run this command too

    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODEL_TYPES]
    if unknown or not names:
        _fail(Bert4RecError(f"unknown model(s) {unknown or names}; choose from {', '.join(MODEL_TYPES)}"))
    out_existed = out.exists()
    try:
        sets = [*(set_ or []), *_train_sets(logger, devices, strategy)]
        if payload is not None:  # `train --payload`: one model, its config from the payload
            from bert4rec.payload import load_payload

            cfg = load_payload(payload).to_config(parse_overrides(sets))
        else:
            cfg = _config(preset, dataset, data_dir, path, config, sets)
        callbacks: list[Any] = []
        if progress_file is not None:
            from bert4rec.training.progress import ProgressFile

            callbacks.append(ProgressFile(progress_file))
        prepared = prepare_data(cfg)
        console.print(_stats_table(prepared.stats, prepared.seconds))
        from bert4rec.data.interactions import require_rankable
        from bert4rec.resources import check_split_memory

        require_rankable(prepared.split.n_items, cfg.eval.ks, prepared.interactions.source)

        check_split_memory(cfg, names, prepared.split)  # every model, before the first one trains
        runs = []
        for name in names:
            console.rule(f"[bold]{name}")
            start = time.perf_counter()
            runs.append(
                train_and_evaluate(
                    name, cfg, prepared, out, resume=resume, progress=progress, callbacks=callbacks
                )
            )
            console.print(f"{name}: trained and evaluated in {time.perf_counter() - start:.1f} s")
    except (Bert4RecError, OSError) as err:
        _remove_if_empty(out, out_existed)
        _fail(err)
    if not all(r.is_global_zero for r in runs):
        return
    records = [r.record for r in runs]
    _, table_path = write_records(records, out / "results", "results")
    console.print(_metrics_table(records))
    console.print(
        f"results: {escape(str(table_path))} (JSON per model beside it); "
        f"data fingerprint {prepared.split.fingerprint}"
    )
    _print_diagnostics(records)
    if cfg.train.logger == "mlflow":
        from bert4rec.training.tracking import mlflow_uri

        console.print(f"MLflow runs: mlflow ui --backend-store-uri {escape(mlflow_uri(out))}")
    elif cfg.train.logger == "wandb":
        console.print(f"wandb offline runs in {escape(str(out / 'wandb'))} (upload later with `wandb sync`)")
    for run in runs:
        if run.artifact is not None:
            console.print(f"saved {run.model_type} model to {escape(str(run.artifact))}")
            _show_examples(run.artifact, examples)


def _print_diagnostics(records: list[dict[str, Any]]) -> None:
    """The end of a run: how each sequence model compares with the baselines, and what to do."""
    from rich.markup import escape

    for record in records:
        diagnostics = record.get("diagnostics")
        if not diagnostics:
            continue
        scores = ", ".join(
            f"{name} {value:.4f}" for name, value in diagnostics["val_ndcg@10"].items() if value is not None
        )
        if diagnostics["beats_baselines"]:
            console.print(f"[green]{record['model']} beats the baselines[/] on validation NDCG@10 ({scores})")
        for finding in diagnostics["findings"]:
            console.print(
                f"[bold yellow]warning:[/] {escape(finding['message'])}; fix: {escape(finding['fix'])}"
            )


def _show_examples(artifact: Path, n: int) -> None:
    from bert4rec.inference.recommender import Recommender

    if n <= 0:
        return
    rec = Recommender.load(artifact)
    for user_id in rec.vocab.user_ids[:n]:
        history = rec.history(user_id)
        last = [rec.item_info(i).get(rec.bundle.display_col or "item_id", i) for i in history[-3:]]
        shown = escape("; ".join(map(str, last)))
        console.print(f"user {escape(str(user_id))}: {len(history)} items, most recent: {shown}")
        title = f"next for user {escape(str(user_id))}"
        console.print(_recommendation_table(title, rec.user_to_item(user_id, k=5)))


@app.command()
def evaluate(
    model: Annotated[
        list[Path],
        typer.Option(
            "--model",
            "-m",
            help="Model folder written by train; give it several times (one config, several seeds) "
            "to evaluate them as one ensemble.",
        ),
    ],
    data_dir: DataDirOpt = None,
    path: PathOpt = None,
    which: Annotated[str, typer.Option(help="val | test")] = "test",
    combine: Annotated[
        str, typer.Option(help="An ensemble's combination: prob (mean probability) | log_prob")
    ] = "prob",
    mixed: Annotated[
        bool,
        typer.Option(
            help="Let an ensemble's models differ in model and training settings too (e.g. window "
            "length), not only in train.seed; they must be one model type on the same data."
        ),
    ] = False,
    verbose: bool = False,
) -> None:
    """Re-evaluate a saved model, or a seed ensemble of several, on its dataset (checks the data
    fingerprint matches)."""
    _setup_logging(verbose)
    from bert4rec.pipeline import evaluate_bundles

    try:
        ev = evaluate_bundles(model, which=which, combine=combine, data_dir=data_dir, path=path, mixed=mixed)
    except Bert4RecError as err:
        _fail(err)
    record = {
        "model": ev.model,
        "metrics": ev.metrics,
        "train_seconds": ev.train_seconds,
        "eval_seconds": ev.eval_seconds,
    }
    split = "Test" if which == "test" else "Validation"
    columns = (("train s", "train_seconds"), ("eval s", "eval_seconds"))
    console.print(_metrics_table([record], split=split, seconds=columns))


QUERY_TYPES = ("user_to_item", "item_to_item", "contextual", "sequential")


def _query_type(user: str | None, item: str | None, item_text: str | None, session: str | None) -> str:
    """The query type the given options ask for (see `recommend`); raises Bert4RecError otherwise."""
    if session is not None:
        if user is not None or item is not None or item_text is not None:
            raise Bert4RecError("--session-items takes no --user, --item or --item-text (a guest's session)")
        return "sequential"
    if user is not None:
        if item_text is not None:
            raise Bert4RecError("--item-text goes with --item alone (item_to_item), not with --user")
        return "contextual" if item is not None else "user_to_item"
    if item is not None or item_text is not None:
        return "item_to_item"
    raise Bert4RecError(
        "give --user (user_to_item), --user and --item (contextual), --item and/or --item-text "
        "(item_to_item) or --session-items (sequential)"
    )


def _parse_filters(pairs: list[str]) -> dict[str, Any]:
    """`meta.field=value` options -> Recommender filters. Values are read as JSON when they parse
    (true, 1995), else as text; a field given twice matches any of its values."""
    import json

    filters: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        name = key.strip().removeprefix("meta.")
        if not sep or not name:
            raise Bert4RecError(f"--filter {pair!r} must look like meta.field=value, e.g. meta.genres=Comedy")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if not isinstance(value, str | int | float | bool):
            value = raw  # JSON lists / objects / null are not filter values: match the text itself
        if name in filters:
            previous = filters[name]
            filters[name] = [*(previous if isinstance(previous, list) else [previous]), value]
        else:
            filters[name] = value
    return filters


@app.command()
def recommend(
    model: Annotated[Path, typer.Option("--model", "-m", help="Model folder written by train.")],
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="A user id: user_to_item, or contextual with --item.")
    ] = None,
    item: Annotated[
        str | None,
        typer.Option(
            "--item", help="An item id: item_to_item, or the current item (contextual) with --user."
        ),
    ] = None,
    item_text: Annotated[
        str | None,
        typer.Option(
            "--item-text",
            help="item_to_item for an item the model does not know: its title or description, matched "
            "with MiniLM (needs the serve extra).",
        ),
    ] = None,
    session_items: Annotated[
        str | None,
        typer.Option(
            "--session-items",
            "--items",
            "-i",
            help="sequential: comma-separated item ids of a session, oldest first (a guest).",
        ),
    ] = None,
    filter_: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            "-f",
            help="Item metadata filter meta.field=value, e.g. meta.genres=Comedy or meta.in_stock=true "
            "(repeatable; the same field twice matches either value).",
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=1000)] = 10,
    include_seen: Annotated[bool, typer.Option(help="Allow items already in the history.")] = False,
) -> None:
    """Recommend items with titles and metadata, for one of the four query types: user_to_item
    (--user), contextual (--user and --item), item_to_item (--item and/or --item-text) or
    sequential (--session-items); --filter restricts the items."""
    from bert4rec.inference.recommender import Recommender

    try:
        query_type = _query_type(user, item, item_text, session_items)
        filters = _parse_filters(filter_ or [])
        rec = Recommender.load(model)
        common: dict[str, Any] = {"k": k, "filters": filters, "filter_seen": not include_seen}
        if query_type == "user_to_item":
            if rec.vocab.has_user(user):
                hist = rec.history(user)
                console.print(
                    f"user {escape(str(user))}: {len(hist)} items in history; last: {escape(str(hist[-5:]))}"
                )
            else:
                console.print(f"user {escape(str(user))} is unknown: falling back to popularity")
            result = rec.user_to_item(user, **common)
            title = f"next for user {escape(str(user))}"
        elif query_type == "contextual":
            result = rec.contextual(user, item, **common)
            title = f"next for user {escape(str(user))} looking at item {escape(str(item))}"
        elif query_type == "item_to_item":
            if item_text is not None and (item is None or not rec.vocab.has_item(item)):
                rec.enable_content()  # MiniLM text cold start for an item the model does not know
            result = rec.item_to_item(item, item_text=item_text, **common)
            title = f"similar to item {escape(str(item))}" if item is not None else "similar to the text"
        else:
            ids = [s.strip() for s in (session_items or "").split(",") if s.strip()]
            result = rec.sequential(ids, **common)
            title = f"next after {len(ids)} items"
    except (Bert4RecError, KeyError) as err:
        _fail(err)
    console.print(_recommendation_table(f"{query_type}: {title}", result))


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by train or compare (--out).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file to write (default RUN_DIR/report.html).")
    ] = None,
    benchmarks: Annotated[
        Path | None,
        typer.Option(
            help="Folder with sweep_*.md/.png (sequence length, mask ratio) to include, if present."
        ),
    ] = Path("benchmarks/results/sweeps"),
    users: Annotated[int, typer.Option(min=0, help="Example users to show.")] = 3,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=100, help="Recommendations per example.")] = 10,
) -> None:
    """Write a self-contained HTML report: metrics, curves, long tail, sweeps and example users."""
    from bert4rec.report import write_report

    try:
        path = write_report(run_dir, out, benchmarks, n_users=users, k=k)
    except Bert4RecError as err:
        _fail(err)
    console.print(f"report: {escape(str(path))} ({path.stat().st_size / 1024:.0f} KiB, self-contained)")


@app.command()
def serve(
    model: Annotated[
        Path | None,
        typer.Option("--model", "-m", help="Model folder written by train (else $BERT4REC_MODEL)."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).", min=0, max=65535)] = None,
    text_cold_start: Annotated[
        bool | None,
        typer.Option(
            "--text-cold-start/--no-text-cold-start",
            help="Load MiniLM so item_to_item accepts item_text for unknown items (needs the serve extra).",
        ),
    ] = None,
    torch_threads: Annotated[
        int | None, typer.Option(min=1, help="Intra-op torch threads (default 1: best per-request latency).")
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="torch (eager) or onnx: an ONNX Runtime export made at start-up, faster per request "
            "(needs the onnx extra; see benchmarks/results/serving/onnx_vs_eager.md).",
        ),
    ] = "torch",
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes (uvicorn workers), each with its own read-only copy of the model; "
            "user intents are computed once and shared through intents.safetensors beside the model.",
        ),
    ] = 1,
    index: Annotated[
        str,
        typer.Option(
            help="Item vector search: exact, hnsw (faiss, approximate), auto (hnsw above "
            "--index-threshold items) or qdrant (a Qdrant server: --qdrant-url; needs the scale extra). "
            "Metadata filters stay exact either way.",
        ),
    ] = "auto",
    index_threshold: Annotated[
        int, typer.Option(min=1, help="Catalogue size above which --index auto uses hnsw.")
    ] = DEFAULT_INDEX_THRESHOLD,
    qdrant_url: Annotated[
        str | None,
        typer.Option(
            help="Qdrant server or cluster of --index qdrant, e.g. http://qdrant:6333 (else "
            "$BERT4REC_QDRANT_URL; its API key from $BERT4REC_QDRANT_API_KEY)."
        ),
    ] = None,
    qdrant_path: Annotated[
        Path | None,
        typer.Option(help="Or a folder for qdrant-client's local mode (one process; development)."),
    ] = None,
    qdrant_collection: Annotated[
        str | None,
        typer.Option(help="Prefix of the Qdrant collections (default bert4rec); one per model."),
    ] = None,
    jobs_dir: Annotated[
        Path | None,
        typer.Option(
            "--jobs-dir",
            help="Enable training jobs (POST /jobs, POST /model to serve a finished one), kept in this "
            "folder (else $BERT4REC_JOBS_DIR; off when neither is set).",
        ),
    ] = None,
    max_jobs: Annotated[
        int | None, typer.Option(min=1, help="Training jobs running at once (default 1; the rest queue).")
    ] = None,
    max_body_bytes: Annotated[
        int | None, typer.Option(min=1, help="Largest request body; larger ones get 413 (default 1048576).")
    ] = None,
    max_concurrency: Annotated[
        int | None,
        typer.Option(
            min=0, help="Requests served at once; more get 503 + Retry-After (default 64; 0 = no limit)."
        ),
    ] = None,
    request_timeout: Annotated[
        float | None,
        typer.Option(min=0, help="Seconds before a request is answered 504 (default 10; 0 = no timeout)."),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            help="File with an API key that user-history and writing routes then require in X-API-Key "
            "(or set $BERT4REC_API_KEY)."
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None, typer.Option(help="Accepted Host header value; repeat for more (default: any).")
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(help="Browser origin allowed to call the API (CORS); repeat for more (default: none)."),
    ] = None,
) -> None:
    """Serve a trained model over HTTP: POST /recommend, GET /health, GET /items/{id} (docs at /docs)."""
    try:
        import uvicorn

        from bert4rec.api import create_app
        from bert4rec.api.settings import load_serve_settings
    except ImportError as err:
        _fail(Bert4RecError(f"serving needs the serve extra ({err}): pip install 'bert4rec[serve]'"))
    try:
        # the options on top of the BERT4REC_* environment: one settings object that this process
        # and (through the environment) every worker of `--workers N` serve with
        settings = load_serve_settings(
            api_key_file=api_key_file,
            model=model,
            host=host,
            port=port,
            backend=backend,
            torch_threads=torch_threads,
            text_cold_start=text_cold_start,
            max_body_bytes=max_body_bytes,
            max_concurrency=max_concurrency,
            request_timeout=request_timeout,
            allowed_hosts=allowed_host or None,
            cors_origins=cors_origin or None,
            jobs_dir=jobs_dir,
            max_jobs=max_jobs,
            index=index,
            index_threshold=index_threshold,
            qdrant_url=qdrant_url,
            qdrant_path=qdrant_path,
            qdrant_collection=qdrant_collection,
            # N processes encode the user histories once: the first writes intents.safetensors
            intents_cache=True if workers > 1 else None,
        )
    except Bert4RecError as err:
        _fail(err)
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    bind_host, bind_port = settings.host, settings.port
    try:
        from bert4rec.api.deps import load_served
        from bert4rec.errors import ConfigError

        if settings.model is None:
            raise ConfigError("no model to serve: pass a model folder or set BERT4REC_MODEL")
        if workers > 1 and settings.jobs_dir is not None:
            raise ConfigError(
                "--workers above 1 cannot serve training jobs (--jobs-dir / BERT4REC_JOBS_DIR): "
                "POST /model would swap the model in one worker only; use one worker with jobs"
            )
        if settings.index == "qdrant" and workers > 1 and settings.qdrant_path is not None:
            raise ConfigError(
                "--workers above 1 need a Qdrant server (--qdrant-url): local mode (--qdrant-path) keeps "
                "its folder locked to one process"
            )
        if workers > 1:
            if bind_port:
                _check_address(bind_host, bind_port)  # a busy port fails now, not after loading the model
            # this process only checks the bundle and writes the user intents beside it, which the
            # workers reuse; each worker makes its own ONNX export, if asked, so this one need not
            load_served(settings.model, settings.model_copy(update={"backend": "torch"}))
            # each worker builds its own app from the environment (uvicorn needs an import string)
            os.environ.update(settings.environment())
        else:
            served = load_served(settings.model, settings)
            application = create_app(served, text_cold_start=text_cold_start, settings=settings)
    except Bert4RecError as err:
        _fail(err)
    address: dict[str, Any] = {"host": bind_host, "port": bind_port, "log_level": log_level}
    address["server_header"] = False  # no "server: uvicorn" banner on every answer
    if workers > 1:
        from bert4rec.api.workers import reuse_port_supported, run_workers

        factory = "bert4rec.api.app:create_app"
        if not reuse_port_supported():  # one shared socket (uneven spread: bert4rec.api.workers)
            uvicorn.run(factory, factory=True, workers=workers, **address)  # type: ignore[arg-type]
            return
        uv_options = {"log_level": log_level, "server_header": False}
        try:
            code = run_workers(factory, workers=workers, host=bind_host, port=bind_port, options=uv_options)
        except OSError as err:
            _fail(_listen_error(bind_host, bind_port, err))
        if code:
            raise typer.Exit(code)
    else:
        uvicorn.run(application, **address)  # type: ignore[arg-type]


def _listen_error(host: str, port: int, err: OSError) -> Bert4RecError:
    """The one-line error for an address `serve` cannot listen on (in use, bad host)."""
    from bert4rec.errors import ConfigError

    return ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}")


def _check_address(host: str, port: int) -> None:
    """Raise ConfigError when (host, port) cannot be bound for `serve --workers`."""
    from bert4rec.api.workers import bind_reuse_port, reuse_port_supported

    if not reuse_port_supported():
        return
    try:
        bind_reuse_port(host, port).close()
    except OSError as err:
        raise _listen_error(host, port, err) from None


@app.command("export-vectors")
def export_vectors(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by train.")],
    out: Annotated[Path, typer.Argument(help="Parquet file to write (e.g. items.parquet).")],
) -> None:
    """Write every servable item's vector (output vector + bias), id, popularity and metadata to Parquet.

    Items added after training are included, retired ones left out. The inner product of a query's
    intent vector (POST /recommend with "return_vector": true) with an item's vector is the model's
    score of that item: load the file into a vector database.
    """
    from bert4rec.inference.vectors import export_item_vectors

    try:
        path, rows, dim, retired = export_item_vectors(model_dir, out)
    except Bert4RecError as err:
        _fail(err)
    left_out = f"; {retired:,} retired item(s) left out" if retired else ""
    console.print(f"wrote {rows:,} item vectors ({dim} floats each) to {path}{left_out}")


items_app = typer.Typer(
    no_args_is_help=True,
    help="Add or retire items of a trained model without retraining (models trained with item text).",
)
app.add_typer(items_app, name="items")
ModelDirArg = Annotated[Path, typer.Argument(help="Model folder written by train.")]


def _metadata_values(rec: Any, pairs: list[str]) -> dict[str, Any]:
    """`field=value` pairs, each value read as the column's type (text stays text; numbers, booleans
    and lists are parsed as JSON)."""
    import json

    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise Bert4RecError(f"--meta {pair!r} must look like field=value, e.g. genres=Comedy")
        name, raw = pair.split("=", 1)
        dtype = rec.catalog.schema.get(name.strip())
        text_column = dtype is not None and not (
            dtype.is_numeric() or str(dtype).startswith(("Boolean", "List"))
        )
        if text_column or dtype is None:
            out[name.strip()] = raw
            continue
        try:
            out[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[name.strip()] = raw  # the catalogue names the expected type
    return out


def _catalog_line(info: dict[str, Any]) -> str:
    return (
        f"catalogue version {info['version']}: {info['trained']} trained, {info['added']} added, "
        f"{info['retired']} retired, {info['active']} recommendable"
    )


@items_app.command("add")
def items_add(
    model_dir: ModelDirArg,
    item_id: Annotated[str, typer.Argument(help="The new item's id (an added item's id updates it).")],
    text: Annotated[str | None, typer.Option("--text", "-t", help="A description of the item.")] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option(
            "--meta", "-m", help="A metadata field: field=value, e.g. title='Heat 2 (2026)' (repeatable)."
        ),
    ] = None,
) -> None:
    """Add an item from its text and metadata (or update an added one); saved beside the model."""
    from bert4rec.inference.recommender import Recommender

    try:
        rec = Recommender.load(model_dir)
        info = rec.add_item(item_id, text=text, metadata=_metadata_values(rec, meta or []))
    except Bert4RecError as err:
        _fail(err)
    console.print(f"added {item_id}; " + _catalog_line(info))


@items_app.command("retire")
def items_retire(
    model_dir: ModelDirArg,
    item_ids: Annotated[list[str], typer.Argument(help="Ids of the items never to recommend again.")],
) -> None:
    """Retire items (trained or added): never recommended again; saved beside the model."""
    from bert4rec.inference.recommender import Recommender

    try:
        info = Recommender.load(model_dir).retire_items(item_ids)
    except Bert4RecError as err:
        _fail(err)
    console.print(f"retired {', '.join(item_ids)}; " + _catalog_line(info))


@items_app.command("show")
def items_show(model_dir: ModelDirArg) -> None:
    """The catalogue version and counts, and the items added after training."""
    from bert4rec.inference.recommender import Recommender

    try:
        rec = Recommender.load(model_dir)
    except Bert4RecError as err:
        _fail(err)
    console.print(_catalog_line(rec.catalog_info()))
    for added in rec.catalog.added:
        retired = rec.catalog.retired[rec.vocab.item_idx(added.item_id)]
        console.print(f"  {added.item_id}{' (retired)' if retired else ''}: {added.embedded_text[:100]}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
