"""Result records and files: what ran, on what data, with which software, and how well it did.

A record is one model run on one dataset:
`{"model", "dataset", "metrics" (Evaluator output), "train_seconds", "config", ...extra}`.
`write_records` stores one JSON file per record plus a markdown table; every file is written to a
temporary file in the same folder and then atomically renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from bert4rec.io import atomic_write_text

_PACKAGES = ("torch", "lightning", "numpy", "polars", "bert4rec")

# (mode, metric, column label) of the markdown table; sampled columns are labelled as such
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("full", "hr@10", "HR@10"),
    ("full", "ndcg@10", "NDCG@10"),
    ("full", "mrr", "MRR"),
    ("sampled_popularity", "hr@10", "HR@10 (sampled, popularity)"),
    ("sampled_popularity", "ndcg@10", "NDCG@10 (sampled, popularity)"),
    ("sampled_uniform", "hr@10", "HR@10 (sampled, uniform)"),
    ("sampled_uniform", "ndcg@10", "NDCG@10 (sampled, uniform)"),
)
# shown after the full-ranking columns when any record has them (data with item genres)
GENRE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("full", "genre_precision@10", "genre P@10"),
    ("full", "genre_ndcg@10", "genre NDCG@10"),
)


def package_version(package: str) -> str | None:
    """The installed version of distribution `package`, or None when it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run_metadata(
    config: dict[str, Any], seed: int, data_fingerprint: str, data_stats: dict[str, Any]
) -> dict[str, Any]:
    """Everything needed to reproduce or audit a run: seed, data fingerprint and stats, config hash,
    library versions, platform, CPU count, accelerator and a UTC timestamp."""
    canonical = json.dumps(config, sort_keys=True, default=_json_default)
    versions = {"python": platform.python_version(), **{p: package_version(p) for p in _PACKAGES}}
    accelerator: str | None = None
    try:
        import torch

        if torch.cuda.is_available():
            accelerator = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return {
        "seed": seed,
        "data_fingerprint": data_fingerprint,
        "data_stats": dict(data_stats),
        "config_sha256": hashlib.sha256(canonical.encode()).hexdigest(),
        "versions": versions,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "accelerator": accelerator,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def make_record(
    model: str,
    dataset: str,
    metrics: dict[str, Any],
    train_seconds: float,
    config: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """One result record: `{"model", "dataset", "metrics", "train_seconds", "config", **extra}`.

    `metrics` is the Evaluator output ({"full": {...}, "sampled_popularity": {...}, ...}).
    """
    if "full" not in metrics:
        keys = sorted(metrics)
        raise ValueError(f"metrics must be an Evaluator result with a 'full' section; got keys {keys}")
    return {
        "model": model,
        "dataset": dataset,
        "metrics": metrics,
        "train_seconds": float(train_seconds),
        "config": config,
        **extra,
    }


def _json_default(obj: Any) -> Any:
    """numpy scalars/arrays, paths and sets as plain JSON values."""
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, torch tensors
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def markdown_table(records: list[dict[str, Any]]) -> str:
    """A markdown table, one row per record: full and sampled HR@10/NDCG@10, MRR, coverage@10, train s;
    plus genre P@10 / genre NDCG@10 (full ranking) when a record has genre metrics."""
    negatives = {r.get("metrics", {}).get("protocol", {}).get("n_negatives", 100) for r in records} or {100}
    datasets = sorted({str(r.get("dataset", "?")) for r in records})
    splits = sorted({str(r.get("metrics", {}).get("protocol", {}).get("split", "test")) for r in records})
    n_neg = "/".join(str(n) for n in sorted(negatives))
    lines = [
        f"Dataset: {', '.join(datasets) or '-'}; leave-one-out {'/'.join(splits)} split. "
        f"Full = the target ranked against all items; sampled columns are sampled with {n_neg} negatives "
        "(popularity-proportional or uniform) and overstate quality compared with full ranking.",
        "",
    ]
    columns = TABLE_COLUMNS
    if any(metric in r.get("metrics", {}).get("full", {}) for r in records for _, metric, _ in GENRE_COLUMNS):
        columns = (*TABLE_COLUMNS[:3], *GENRE_COLUMNS, *TABLE_COLUMNS[3:])
        column = next(
            (g["column"] for r in records if (g := r.get("metrics", {}).get("protocol", {}).get("genres"))),
            "?",
        )
        lines[0] += (
            f" Genre columns (full ranking, item column {column!r}): share of the top 10 sharing a genre "
            "with the target, and NDCG@10 graded by Jaccard genre overlap (docs/genre-metrics.md)."
        )
    header = ["model", *(label for _, _, label in columns), "coverage@10", "train s"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for r in records:
        m = r.get("metrics", {})
        cells = [str(r.get("model", "?"))]
        cells += [_fmt(m.get(mode, {}).get(metric)) for mode, metric, _ in columns]
        cells += [_fmt(m.get("coverage@10"), 3), _fmt(r.get("train_seconds"), 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_records(records: list[dict[str, Any]], out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write `{name}_{model}.json` per record and the table `{name}.md` into `out_dir`, atomically.

    Returns (out_dir, path of the markdown table). Two records with the same model name would
    overwrite each other's file, so that raises instead.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}_{_safe_name(str(r['model']))}.json" for r in records]
    if len(set(paths)) != len(paths):
        raise ValueError(
            f"records share a model name ({[r['model'] for r in records]}); write them under different names"
        )
    for record, path in zip(records, paths, strict=True):
        atomic_write_text(path, json.dumps(record, indent=2, default=_json_default) + "\n")
    table = out_dir / f"{name}.md"
    atomic_write_text(table, markdown_table(records))
    return out_dir, table


def _without_seed(config: dict[str, Any]) -> dict[str, Any]:
    train = {k: v for k, v in config.get("train", {}).items() if k != "seed"}
    return {**config, "train": train}


def _with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """A record's config with every setting this version knows (a record written before a setting
    existed ran with its default); left as written when it is not a valid config of this version."""
    from pydantic import ValidationError

    from bert4rec.config import ExperimentConfig

    try:
        return ExperimentConfig.model_validate(config).model_dump(mode="json")
    except (ValidationError, TypeError):
        return config


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON-like values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def seed_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The settings (dotted paths) in which two runs' configs differ, the seed aside; a config
    written before a setting existed counts as having its default."""
    return _differences(_without_seed(_with_defaults(a)), _without_seed(_with_defaults(b)))


def seed_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation over runs of one model that differ only in `train.seed`.

    Returns `{"model", "dataset", "seeds", "n_runs", "metrics": {mode: {metric: {"mean", "std",
    "values"}}}, "train_seconds": {...}, "epochs": {...}, "config"}` (config without the seed; std is
    None for one run). Raises ValueError when the records mix models or datasets, repeat a seed or
    differ in any other setting (naming the setting), so a row never averages different configs.
    """
    if not records:
        raise ValueError("no records to summarise")
    first = records[0]
    config = _without_seed(_with_defaults(first.get("config", {})))
    for r in records[1:]:
        for key in ("model", "dataset"):
            if r.get(key) != first.get(key):
                raise ValueError(f"records mix {key}s: {first.get(key)!r} and {r.get(key)!r}")
        differ = seed_differences(first.get("config", {}), r.get("config", {}))
        if differ:
            raise ValueError(f"the runs differ in more than the seed: {', '.join(differ[:5])}")
    seeds = [r.get("config", {}).get("train", {}).get("seed") for r in records]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"a seed appears twice: {seeds}")

    def stats(values: list[float]) -> dict[str, Any]:
        n = len(values)
        mean = sum(values) / n
        std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else None
        return {"mean": mean, "std": std, "values": values}

    metrics: dict[str, dict[str, Any]] = {}
    for mode, section in first.get("metrics", {}).items():
        if not isinstance(section, dict):
            continue
        for metric, value in section.items():
            values = [r.get("metrics", {}).get(mode, {}).get(metric) for r in records]
            if isinstance(value, (int, float)) and all(isinstance(v, (int, float)) for v in values):
                metrics.setdefault(mode, {})[metric] = stats([float(v) for v in values])
    out = {
        "model": first.get("model"),
        "dataset": first.get("dataset"),
        "seeds": seeds,
        "n_runs": len(records),
        "metrics": metrics,
        "train_seconds": stats([float(r.get("train_seconds", 0.0)) for r in records]),
        "config": config,
    }
    if all(isinstance(r.get("epochs"), int) for r in records):
        out["epochs"] = stats([float(r["epochs"]) for r in records])
    return out


def seed_table(summaries: list[dict[str, Any]]) -> str:
    """A markdown table of `seed_summary` results: mean ± standard deviation per column, the seeds."""
    lines = [
        "Mean ± sample standard deviation over the seeds of each row; leave-one-out test split. Full = "
        "the target ranked against all items; sampled columns use 100 negatives and overstate quality.",
        "",
    ]
    header = ["model", *(label for _, _, label in TABLE_COLUMNS), "train s", "seeds"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 2) + ["---"]) + "|")

    def cell(stat: dict[str, Any] | None, digits: int = 4) -> str:
        if not stat:
            return "-"
        std = stat.get("std")
        return _fmt(stat["mean"], digits) + ("" if std is None else f" ± {_fmt(std, digits)}")

    for s in summaries:
        cells = [str(s.get("model", "?"))]
        cells += [cell(s.get("metrics", {}).get(mode, {}).get(metric)) for mode, metric, _ in TABLE_COLUMNS]
        cells += [cell(s.get("train_seconds"), 0), ", ".join(str(x) for x in s.get("seeds", []))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
