"""`bert4rec` command line: prepare | train | evaluate | recommend | compare | serve | items. A thin
shell over `bert4rec.pipeline`, `bert4rec.inference` and `bert4rec.evaluation`."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from bert4rec.config import PRESETS, ExperimentConfig, build_config, deep_merge, load_config, parse_overrides
from bert4rec.errors import Bert4RecError

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
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    return table


def _metrics_table(records: list[dict[str, Any]], ks: tuple[int, ...] = (10,)) -> Table:
    table = Table(title="Test metrics (leave-one-out; sampled = 100 negatives, labelled)")
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
    table.add_column("coverage@10", justify="right")
    table.add_column("train s", justify="right")
    for r in records:
        m = r["metrics"]
        table.add_row(
            r["model"],
            *[f"{m[mode][metric]:.4f}" for mode, metric in cols],
            f"{m.get('coverage@10', float('nan')):.3f}",
            f"{r['train_seconds']:.1f}",
        )
    return table


def _recommendation_table(title: str, recs: Any) -> Table:
    table = Table(title=f"{title} (path: {recs.path}{', history truncated' if recs.truncated else ''})")
    for col in ("rank", "item_id", "title", "details", "score"):
        table.add_column(col, justify="right" if col in ("rank", "score") else "left")
    for r in recs.items:
        details = ", ".join(f"{k}: {v}" for k, v in r.metadata.items())
        table.add_row(str(r.rank), str(r.item_id), r.title or "", details, f"{r.score:.3f}")
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
    console.print(f"[bold red]error:[/] {err}")
    raise typer.Exit(code=2)


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


@app.command()
def train(
    preset: PresetOpt = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    path: PathOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    model: Annotated[str, typer.Option("--model", "-m", help="bert4rec | sasrec")] = "bert4rec",
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
    compare(
        preset,
        dataset,
        data_dir,
        path,
        config,
        set_,
        models=model,
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
    models: Annotated[str, typer.Option(help="Comma-separated: bert4rec,sasrec,popularity,item_knn,mf")] = (
        "bert4rec,sasrec,popularity,item_knn,mf"
    ),
    out: OutOpt = Path("runs/compare"),
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
    from bert4rec.pipeline import ALL_MODELS, is_global_zero, train_and_evaluate
    from bert4rec.pipeline import prepare as prepare_data

    console.quiet = not is_global_zero()  # the other DDP processes run this command too

    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in ALL_MODELS]
    if unknown or not names:
        _fail(Bert4RecError(f"unknown model(s) {unknown or names}; choose from {', '.join(ALL_MODELS)}"))
    try:
        cfg = _config(
            preset, dataset, data_dir, path, config, [*(set_ or []), *_train_sets(logger, devices, strategy)]
        )
        prepared = prepare_data(cfg)
        console.print(_stats_table(prepared.stats, prepared.seconds))
        runs = []
        for name in names:
            console.rule(f"[bold]{name}")
            start = time.perf_counter()
            runs.append(train_and_evaluate(name, cfg, prepared, out, resume=resume, progress=progress))
            console.print(f"{name}: trained and evaluated in {time.perf_counter() - start:.1f} s")
    except Bert4RecError as err:
        _fail(err)
    if not all(r.is_global_zero for r in runs):
        return
    records = [r.record for r in runs]
    _, table_path = write_records(records, out / "results", "results")
    console.print(_metrics_table(records))
    console.print(
        f"results: {table_path} (JSON per model beside it); data fingerprint {prepared.split.fingerprint}"
    )
    if cfg.train.logger == "mlflow":
        from bert4rec.training.tracking import mlflow_uri

        console.print(f"MLflow runs: mlflow ui --backend-store-uri {mlflow_uri(out)}")
    elif cfg.train.logger == "wandb":
        console.print(f"wandb offline runs in {out / 'wandb'} (upload later with `wandb sync`)")
    for run in runs:
        if run.artifact is not None:
            console.print(f"saved {run.model_type} model to {run.artifact}")
            _show_examples(run.artifact, examples)


def _show_examples(artifact: Path, n: int) -> None:
    from bert4rec.inference.recommender import Recommender

    if n <= 0:
        return
    rec = Recommender.load(artifact)
    for user_id in rec.vocab.user_ids[:n]:
        history = rec.history(user_id)
        last = [rec.item_info(i).get(rec.bundle.display_col or "item_id", i) for i in history[-3:]]
        console.print(f"user {user_id}: {len(history)} items, most recent: {'; '.join(map(str, last))}")
        console.print(_recommendation_table(f"next for user {user_id}", rec.recommend_for_user(user_id, k=5)))


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", "-m", help="Model folder written by train.")],
    data_dir: DataDirOpt = None,
    path: PathOpt = None,
    which: Annotated[str, typer.Option(help="val | test")] = "test",
    verbose: bool = False,
) -> None:
    """Re-evaluate a saved model on its dataset (checks the data fingerprint matches)."""
    _setup_logging(verbose)
    from bert4rec.artifacts import load_bundle
    from bert4rec.evaluation.evaluator import Evaluator
    from bert4rec.inference.scoring import TransformerScorer
    from bert4rec.pipeline import prepare as prepare_data

    if which not in ("val", "test"):
        _fail(Bert4RecError(f"--which must be 'val' or 'test', got {which!r}"))
    try:
        bundle = load_bundle(model)
        data_update: dict[str, Any] = {}
        if data_dir:
            data_update["data_dir"] = data_dir
        if path:
            data_update.update(dataset="file", path=path)
        cfg = bundle.config.model_copy(update={"data": bundle.config.data.model_copy(update=data_update)})
        prepared = prepare_data(cfg)
        expected = bundle.run.get("data_fingerprint")
        if expected and expected != prepared.split.fingerprint:
            raise Bert4RecError(
                f"the data differs from what the model was trained on "
                f"(fingerprint {prepared.split.fingerprint} "
                f"!= {expected}); evaluate on the same data or retrain"
            )
        metrics = Evaluator(prepared.split, cfg.eval).evaluate(TransformerScorer(bundle.model), which=which)  # type: ignore[arg-type]
    except Bert4RecError as err:
        _fail(err)
    console.print(_metrics_table([{"model": cfg.model_type, "metrics": metrics, "train_seconds": 0.0}]))


@app.command()
def recommend(
    model: Annotated[Path, typer.Option("--model", "-m", help="Model folder written by train.")],
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="A user id from the training data.")
    ] = None,
    items: Annotated[
        str | None, typer.Option("--items", "-i", help="Comma-separated item ids, oldest first.")
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=1000)] = 10,
    include_seen: Annotated[bool, typer.Option(help="Allow items already in the history.")] = False,
) -> None:
    """Recommend next items for a user id or a list of item ids, with titles and genres."""
    from bert4rec.inference.recommender import Recommender

    if (user is None) == (items is None):
        _fail(Bert4RecError("give exactly one of --user or --items"))
    try:
        rec = Recommender.load(model)
        if user is not None:
            if rec.vocab.has_user(user):
                hist = rec.history(user)
                console.print(f"user {user}: {len(hist)} items in history; last: {hist[-5:]}")
            else:
                console.print(f"user {user} is unknown: falling back to popularity")
            result = rec.recommend_for_user(user, k=k, filter_seen=not include_seen)
            title = f"next for user {user}"
        else:
            ids = [s.strip() for s in (items or "").split(",") if s.strip()]
            result = rec.recommend_for_items(ids, k=k, filter_seen=not include_seen)
            title = f"next after {len(ids)} items"
    except (Bert4RecError, KeyError) as err:
        _fail(err)
    console.print(_recommendation_table(title, result))


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
    ] = Path("benchmarks/results"),
    users: Annotated[int, typer.Option(min=0, help="Example users to show.")] = 3,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=100, help="Recommendations per example.")] = 10,
) -> None:
    """Write a self-contained HTML report: metrics, curves, long tail, sweeps and example users."""
    from bert4rec.report import write_report

    try:
        path = write_report(run_dir, out, benchmarks, n_users=users, k=k)
    except Bert4RecError as err:
        _fail(err)
    console.print(f"report: {path} ({path.stat().st_size / 1024:.0f} KiB, self-contained)")


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
            "(needs the onnx extra; see benchmarks/results/onnx_vs_eager.md).",
        ),
    ] = "torch",
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve a trained model over HTTP: POST /recommend, GET /health, GET /items/{id} (docs at /docs)."""
    try:
        import uvicorn

        from bert4rec.api import create_app
        from bert4rec.api.settings import ServeSettings
    except ImportError as err:
        _fail(Bert4RecError(f"serving needs the serve extra ({err}): pip install 'bert4rec[serve]'"))
    settings = ServeSettings()
    threads = torch_threads or settings.torch_threads
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        served: Any = model
        if backend != "torch":  # create_app loads the eager Recommender itself
            from bert4rec.errors import ConfigError
            from bert4rec.inference.recommender import Recommender

            path = model or settings.model
            if path is None:
                raise ConfigError("no model to serve: pass a model folder or set BERT4REC_MODEL")
            served = Recommender.load(path, backend=backend, threads=threads or 1)
        application = create_app(served, text_cold_start=text_cold_start, settings=settings)
    except Bert4RecError as err:
        _fail(err)
    uvicorn.run(application, host=host or settings.host, port=port or settings.port, log_level=log_level)


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
