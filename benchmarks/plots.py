"""Plots shared by the benchmark scripts (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bert4rec.io import atomic_path


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(ax: Any, series: dict[str, list[dict[str, Any]]]) -> None:
    """Validation NDCG@10 vs training wall-clock minutes, one line per label, on `ax`."""
    for label, history in series.items():
        curve = [h for h in history if h.get("val_ndcg@10") is not None and h.get("elapsed_s") is not None]
        ax.plot(
            [h["elapsed_s"] / 60 for h in curve], [h["val_ndcg@10"] for h in curve], marker="o",
            markersize=3, label=label,
        )  # fmt: skip
    ax.set_xlabel("training wall-clock minutes")
    ax.set_ylabel("validation NDCG@10 (full ranking)")
    ax.grid(alpha=0.3)
    ax.legend()


def save_figure(fig: Any, path: Path) -> None:
    fig.tight_layout()
    try:
        with atomic_path(path, mode=0o644) as tmp:
            fig.savefig(tmp, dpi=90)
    finally:
        _pyplot().close(fig)


def time_to_quality_png(series: dict[str, list[dict[str, Any]]], title: str, path: Path) -> None:
    """One chart of validation NDCG@10 vs wall-clock minutes for several runs."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_curves(ax, series)
    ax.set_title(title)
    save_figure(fig, path)
