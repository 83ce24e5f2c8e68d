"""`bert4rec report RUN_DIR`: one self-contained HTML page about a train / compare run folder.

Reads what the run wrote (`results/*.json` records, per-epoch history, `<model>/model` bundles) and,
optionally, the one-factor sweep tables of `benchmarks/results/sweeps` (`sweep_*.md` / `.png`). The page
has inline CSS and the plots (matplotlib, Agg) embedded as base64 PNGs, so it can be mailed or
archived as one file. Sections: run summary, test metrics (full ranking and sampled, labelled),
genre-level metrics (when the data has item genres), training and validation curves, metrics by
item-popularity bucket, sweeps, and example users with their history and each model's
recommendations (titles and genres).
"""

from __future__ import annotations

import base64
import io
import json
import re
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from bert4rec.config import MODEL_TYPES
from bert4rec.errors import Bert4RecError
from bert4rec.evaluation.long_tail import BUCKETS
from bert4rec.io import atomic_write_text
from bert4rec.run_logs import VAL_METRIC, read_history

LOSS = "train_loss_epoch"
# (section, metric, label): the three ranking protocols, never mixed up in one column group
METRIC_GROUPS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "full",
        "Full ranking (target vs all items)",
        (("hr@10", "HR@10"), ("ndcg@10", "NDCG@10"), ("mrr", "MRR")),
    ),
    (
        "sampled_popularity",
        "Sampled: {n} negatives, popularity-proportional",
        (("hr@10", "HR@10"), ("ndcg@10", "NDCG@10")),
    ),
    ("sampled_uniform", "Sampled: {n} negatives, uniform", (("hr@10", "HR@10"), ("ndcg@10", "NDCG@10"))),
)

# (metric of the "full" section, label) of the genre-level table; exact-item columns for reference
GENRE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("hr@10", "HR@10"),
    ("ndcg@10", "NDCG@10"),
    ("genre_precision@10", "genre P@10"),
    ("genre_ndcg@10", "genre NDCG@10"),
)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;margin:0;
  background:#f5f6f8}
main{max-width:1180px;margin:0 auto;padding:20px 28px 60px}
header{background:#1f3a5f;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;opacity:.85}
nav{margin-top:8px} nav a{color:#cfe0ff;margin-right:14px;text-decoration:none}
section{background:#fff;border-radius:8px;padding:16px 20px;margin:18px 0;
  box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:18px;margin:0 0 10px} h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #dde1e7;padding:4px 8px;text-align:right} th{background:#eef1f5}
td:first-child,th:first-child{text-align:left} th:not(.group){white-space:nowrap}
td.best{font-weight:700;background:#e6f4ea}
th.group{text-align:center;background:#dde6f3}
th.sampled,td.sampled{background:#fbf7ec} td.sampled.best{background:#e6f4ea}
.note{color:#5a6473;font-size:13px} .scroll{overflow-x:auto}
img{max-width:100%;height:auto;border:1px solid #eee}
.kv td{text-align:left} .kv td:first-child{color:#5a6473}
.users{display:grid;grid-template-columns:1fr;gap:14px}
.user{border:1px solid #dde1e7;border-radius:6px;padding:10px 14px}
.user table{width:100%} .user td,.user th{text-align:left} .user td.rank{text-align:right;width:2em}
.genre{color:#5a6473;font-size:12px}
tr.hit td{background:#e6f4ea;font-weight:600}
.target{background:#fff4d6;padding:2px 6px;border-radius:4px}
"""


class ReportError(Bert4RecError):
    """The run folder has nothing to report, or the report extra (matplotlib) is missing."""


# ---------------------------------------------------------------------------------------------- inputs
def load_records(run_dir: Path) -> list[dict[str, Any]]:
    """The result records in `run_dir/results/*.json`, in file order; raises ReportError if none."""
    folder = Path(run_dir) / "results"
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ReportError(f"{path} is not valid JSON ({err}); rerun the training that wrote it") from None
        if isinstance(record, dict) and "model" in record and "metrics" in record:
            records.append(record)
    records.sort(
        key=lambda r: (MODEL_TYPES.index(r["model"]) if r["model"] in MODEL_TYPES else 99, str(r["model"]))
    )
    if not records:
        raise ReportError(
            f"no result records in {folder}; write some with `bert4rec train --out {run_dir}` "
            f"or `bert4rec compare --out {run_dir}`"
        )
    return records


def model_history(record: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    """Per-epoch rows of a Transformer run: from the record, else from `<model>/logs/metrics.csv`."""
    history = record.get("history") or []
    logs = Path(run_dir) / str(record["model"]) / "logs"
    if not history and (logs / "metrics.csv").exists():
        history = read_history(logs)
    return [h for h in history if isinstance(h, dict)]


# ---------------------------------------------------------------------------------------------- plots
def _pyplot():  # type: ignore[no-untyped-def]
    try:
        import matplotlib
    except ImportError:
        raise ReportError("the report needs matplotlib: pip install 'bert4rec[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    _pyplot().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def curves_png(histories: dict[str, list[dict[str, Any]]], colors: dict[str, str] | None = None) -> str:
    """Base64 PNG: training loss and validation NDCG@10 per epoch, and NDCG@10 vs wall-clock time."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    longest = max((r.get("elapsed_s") or 0.0 for rows in histories.values() for r in rows), default=0.0)
    unit, per = ("minutes", 60.0) if longest > 120 else ("seconds", 1.0)
    for i, (model, rows) in enumerate(histories.items()):
        color = (colors or {}).get(model, f"C{i}")
        loss = [r for r in rows if r.get(LOSS) is not None]
        val = [r for r in rows if r.get(VAL_METRIC) is not None]
        axes[0].plot(
            [r["epoch"] for r in loss], [r[LOSS] for r in loss], marker="o", ms=3, color=color, label=model
        )
        axes[1].plot(
            [r["epoch"] for r in val],
            [r[VAL_METRIC] for r in val],
            marker="o",
            ms=3,
            color=color,
            label=model,
        )
        timed = [r for r in val if r.get("elapsed_s") is not None]
        axes[2].plot(
            [r["elapsed_s"] / per for r in timed],
            [r[VAL_METRIC] for r in timed],
            marker="o",
            ms=3,
            color=color,
            label=model,
        )
        if val:
            best = max(val, key=lambda r: r[VAL_METRIC])
            axes[1].scatter(
                [best["epoch"]], [best[VAL_METRIC]], s=60, facecolors="none", edgecolors=color, zorder=3
            )
    titles = ("training loss (epoch mean)", "validation NDCG@10 (full ranking)", "validation NDCG@10 vs time")
    xlabels = ("epoch", "epoch", f"training wall-clock {unit}")
    for ax, title, xlabel in zip(axes, titles, xlabels, strict=True):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=xlabel == "epoch"))
        ax.set_title(title, fontsize=11)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    return _png(fig)


def long_tail_png(records: list[dict[str, Any]]) -> str:
    """Base64 PNG: NDCG@10 (full ranking) per item-popularity bucket of the target, one bar per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / max(len(records), 1)
    for i, record in enumerate(records):
        tail = record["metrics"].get("long_tail", {})
        values = [(tail.get(b) or {}).get("ndcg@10") or 0.0 for b in BUCKETS]
        xs = [j + (i - (len(records) - 1) / 2) * width for j in range(len(BUCKETS))]
        ax.bar(xs, values, width=width, color=f"C{i}", label=str(record["model"]))
    ax.set_xticks(range(len(BUCKETS)), [f"{b} items" for b in BUCKETS])
    ax.set_ylabel("NDCG@10 (full ranking)")
    ax.set_title("test NDCG@10 by popularity of the target item", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=9, ncols=min(len(records), 5))
    return _png(fig)


# ---------------------------------------------------------------------------------------------- html parts
def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{b64}">'


def metrics_table(records: list[dict[str, Any]]) -> str:
    """HTML table: one row per model; full and sampled metrics in separate, labelled column groups."""
    n_neg = sorted({r["metrics"].get("protocol", {}).get("n_negatives", 100) for r in records})
    n = "/".join(str(x) for x in n_neg)
    groups = [(sec, title.format(n=n), cols) for sec, title, cols in METRIC_GROUPS]
    columns = [(sec, metric) for sec, _, cols in groups for metric, _ in cols]
    # bold the best model per column (nothing to compare with a single model)
    best = {c: max((r["metrics"].get(c[0], {}).get(c[1]) or 0.0) for r in records) for c in columns}
    if len(records) < 2:
        best = {}
    head1 = '<tr><th rowspan="2">model</th>'
    head1 += "".join(
        f'<th class="group{" sampled" if sec != "full" else ""}" colspan="{len(cols)}">{escape(t)}</th>'
        for sec, t, cols in groups
    )
    head1 += '<th rowspan="2">coverage@10</th><th rowspan="2">epochs</th><th rowspan="2">train s</th></tr>'
    head2 = "<tr>" + "".join(
        f'<th class="{"sampled" if sec != "full" else ""}">{label}</th>'
        for sec, _, cols in groups
        for _, label in cols
    )
    head2 += "</tr>"
    rows = []
    for r in records:
        m = r["metrics"]
        cells = [f"<td>{escape(str(r['model']))}</td>"]
        for sec, metric in columns:
            value = m.get(sec, {}).get(metric)
            is_best = value is not None and value == best.get((sec, metric))
            classes = [c for c in ("sampled" if sec != "full" else "", "best" if is_best else "") if c]
            cells.append(f'<td class="{" ".join(classes)}">{_fmt(value)}</td>')
        cells.append(f"<td>{_fmt(m.get('coverage@10'), 3)}</td>")
        cells.append(f"<td>{_fmt(r.get('epochs'))}</td><td>{_fmt(r.get('train_seconds'), 1)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table id="metrics-table">{head1}{head2}{"".join(rows)}</table></div>'


def genre_section(records: list[dict[str, Any]]) -> str | None:
    """Genre-level metrics (full ranking) per model with their definitions; None when no record has them."""
    if not any("genre_precision@10" in r["metrics"].get("full", {}) for r in records):
        return None
    protocol: dict[str, Any] = next(
        (g for r in records if (g := r["metrics"].get("protocol", {}).get("genres"))), {}
    )
    notes = [
        f"Item genres from column {protocol.get('column', '?')!r} "
        f"({_fmt(protocol.get('n_genres'))} genres; {_fmt(protocol.get('n_users'))} test users have a "
        "target with a genre). Exact-item HR@10 / NDCG@10 repeated for reference; best per column in bold.",
        protocol.get("genre_precision", ""),
        protocol.get("genre_ndcg", ""),
        protocol.get("list", ""),
    ]
    best = {
        key: max((r["metrics"].get("full", {}).get(key) or 0.0) for r in records) for key, _ in GENRE_COLUMNS
    }
    if len(records) < 2:
        best = {}
    head = "<tr><th>model</th>" + "".join(f"<th>{label}</th>" for _, label in GENRE_COLUMNS) + "</tr>"
    rows = []
    for r in records:
        full = r["metrics"].get("full", {})
        cells = [f"<td>{escape(str(r['model']))}</td>"]
        for key, _ in GENRE_COLUMNS:
            value = full.get(key)
            is_best = value is not None and value == best.get(key)
            cells.append(f'<td class="{"best" if is_best else ""}">{_fmt(value)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    body = "".join(f'<p class="note">{escape(n)}</p>' for n in notes if n)
    return body + f'<div class="scroll"><table id="genre-table">{head}{"".join(rows)}</table></div>'


def long_tail_table(records: list[dict[str, Any]]) -> str:
    """HTML table: users, HR@10 and NDCG@10 per popularity bucket of the target, per model."""
    first = records[0]["metrics"].get("long_tail", {})
    head = "<tr><th>model</th>" + "".join(
        f'<th class="group" colspan="3">{b}: {_fmt((first.get(b) or {}).get("n_items"))} items, '
        f"{100 * ((first.get(b) or {}).get('share_of_train_interactions') or 0):.0f}% of training "
        "interactions</th>"
        for b in BUCKETS
    )
    head += "</tr><tr><th></th>" + "<th>users</th><th>HR@10</th><th>NDCG@10</th>" * len(BUCKETS) + "</tr>"
    rows = []
    for r in records:
        tail = r["metrics"].get("long_tail", {})
        cells = "".join(
            "".join(
                f"<td>{_fmt((tail.get(b) or {}).get(key))}</td>" for key in ("n_users", "hr@10", "ndcg@10")
            )
            for b in BUCKETS
        )
        rows.append(f"<tr><td>{escape(str(r['model']))}</td>{cells}</tr>")
    return f'<div class="scroll"><table id="long-tail-table">{head}{"".join(rows)}</table></div>'


def markdown_to_html(text: str) -> str:
    """The markdown our benchmark scripts write: paragraphs and pipe tables (cells escaped)."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if not table:
            return
        header, *body = table
        body = [row for row in body if not all(re.fullmatch(r":?-{3,}:?", c) for c in row)]
        out.append(
            "<table><tr>" + "".join(f"<th>{escape(c)}</th>" for c in header) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in body)
            + "</table>"
        )  # fmt: skip
        table.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            table.append([c.strip() for c in stripped.strip("|").split("|")])
            continue
        flush()
        if stripped:
            out.append(f'<p class="note">{escape(stripped.lstrip("#").strip())}</p>')
    flush()
    return "\n".join(out)


def sweeps_section(benchmarks: Path | None) -> str | None:
    """Sequence-length / mask-ratio sweep tables (`sweep_*.md`) and plots (`sweep_*.png`), if any."""
    if benchmarks is None or not Path(benchmarks).is_dir():
        return None
    parts = []
    for md in sorted(Path(benchmarks).glob("sweep_*.md")):
        parts.append(f"<h3>{escape(md.stem)}</h3>{markdown_to_html(md.read_text())}")
        png = md.with_suffix(".png")
        if png.exists():
            parts.append(_img(base64.b64encode(png.read_bytes()).decode("ascii"), md.stem))
    return "\n".join(parts) or None


def _item_cell(rec: Any, item_id: Any) -> str:
    info = rec.item_info(item_id)
    title = rec.title(item_id) or str(item_id)
    extra = [
        str(v).replace("|", " · ")
        for k, v in info.items()
        if k not in ("item_id", rec.display_col) and v is not None and str(v) != ""
    ]
    genre = f' <span class="genre">{escape("; ".join(extra))}</span>' if extra else ""
    return f"{escape(title)}{genre}"


def examples_section(
    run_dir: Path, models: list[str], n_users: int, k: int, history_shown: int = 8
) -> str | None:
    """Example users: their recent history, the held-out test item, and each saved model's top k from
    the history before it (the test protocol); a recommended held-out item is highlighted."""
    from bert4rec.artifacts import POINTER
    from bert4rec.inference.recommender import Recommender

    if n_users <= 0:
        return None
    recs = {}
    for model in models:
        path = Path(run_dir) / model / "model"
        if (path / POINTER).exists() or (path / "manifest.json").exists():  # a bundle (see artifacts)
            recs[model] = Recommender.load(path)
    if not recs:
        return None
    first = next(iter(recs.values()))
    users = [u for u in first.vocab.user_ids if len(first.history(u)) >= 3]
    picks = [
        users[round(i * (len(users) - 1) / max(n_users - 1, 1))] for i in range(min(n_users, len(users)))
    ]
    cards = []
    for user in dict.fromkeys(picks):
        history = first.history(user)
        before, target = history[:-1], history[-1]
        shown = before[-history_shown:]
        hist_rows = "".join(f"<li>{_item_cell(first, i)}</li>" for i in shown)
        lists = {m: r.sequential(before, k=k).items for m, r in recs.items()}
        header = "<tr><th>#</th>" + "".join(f"<th>{escape(m)}</th>" for m in lists) + "</tr>"
        body = []
        for rank in range(k):
            cells = []
            for items in lists.values():
                if rank < len(items):
                    hit = items[rank].item_id == target
                    cell = _item_cell(first, items[rank].item_id)
                    cells.append(f'<td class="{"hit" if hit else ""}">{"✓ " if hit else ""}{cell}</td>')
                else:
                    cells.append("<td></td>")
            body.append(f'<tr><td class="rank">{rank + 1}</td>{"".join(cells)}</tr>')
        cards.append(
            f'<div class="user" data-user="{escape(str(user))}"><h3>user {escape(str(user))} '
            f'<span class="note">({len(history)} items; the last {len(shown)} before the held-out one)'
            "</span></h3>"
            f'<ol start="{len(before) - len(shown) + 1}">{hist_rows}</ol>'
            f'<p>held-out next item: <span class="target">{_item_cell(first, target)}</span></p>'
            f"<table>{header}{''.join(body)}</table></div>"
        )
    return '<div class="users">' + "".join(cards) + "</div>"


def _summary(records: list[dict[str, Any]], run_dir: Path) -> str:
    run: dict[str, Any] = next((r["run"] for r in records if r.get("run")), {})
    stats = run.get("data_stats", {})
    rows = [
        ("run folder", escape(str(run_dir))),
        ("dataset", escape(", ".join(sorted({str(r.get("dataset")) for r in records})))),
        ("users / items / interactions", " / ".join(_fmt(stats.get(k)) for k in ("users", "items",
                                                                                 "interactions"))),
        ("data fingerprint", escape(str(run.get("data_fingerprint", "–")))),
        ("seed", _fmt(run.get("seed"))),
        ("protocol", "leave-one-out: last item = test, second last = validation; history items excluded"),
        ("software", escape(", ".join(f"{k} {v}" for k, v in (run.get("versions") or {}).items() if v))),
        ("machine", escape(f"{run.get('platform', '–')}, {run.get('cpu_count', '–')} CPUs, "
                           f"accelerator: {run.get('accelerator') or 'none'}")),
        ("trained", escape(str(run.get("timestamp", "–")))),
    ]  # fmt: skip
    return '<table class="kv">' + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"


# ---------------------------------------------------------------------------------------------- page
def render_report(run_dir: Path, benchmarks: Path | None = None, n_users: int = 3, k: int = 10) -> str:
    """The report page as one HTML string (see the module docstring); raises ReportError."""
    run_dir = Path(run_dir)
    records = load_records(run_dir)
    histories = {str(r["model"]): h for r in records if (h := model_history(r, run_dir))}
    colors = {str(r["model"]): f"C{i}" for i, r in enumerate(records)}  # the same in every plot
    sections = [
        ("summary", "Run", _summary(records, run_dir)),
        (
            "metrics",
            "Test metrics",
            '<p class="note">Full ranking scores the held-out item against every item and is the number to '
            "compare. Sampled columns (shaded) rank it against a few sampled negatives only and overstate "
            "quality; they are shown for comparison with papers that report them. Best per column in bold."
            "</p>" + metrics_table(records),
        ),
    ]
    genres = genre_section(records)
    if genres:
        sections.append(("genres", "Genre-level metrics", genres))
    if histories:
        curves = _img(curves_png(histories, colors), "training and validation curves")
        sections.append(("curves", "Training and validation curves", curves))
    if any(r["metrics"].get("long_tail") for r in records):
        policy = records[0]["metrics"].get("protocol", {}).get("long_tail", "")
        body = f'<p class="note">{escape(policy)}</p>' + long_tail_table(records)
        body += _img(long_tail_png(records), "NDCG@10 by item popularity")
        sections.append(("long-tail", "Metrics by item popularity", body))
    sweeps = sweeps_section(benchmarks)
    if sweeps:
        sections.append(("sweeps", "Sequence length and mask ratio (benchmarks)", sweeps))
    examples = examples_section(run_dir, [str(r["model"]) for r in records], n_users, k)
    if examples:
        note = (
            '<p class="note">Each saved model ranks items after the user\'s history up to the held-out '
            "item, as in the test protocol (seen items excluded). ✓ = the held-out item.</p>"
        )
        sections.append(("examples", "Example users", note + examples))

    nav = "".join(f'<a href="#{sid}">{escape(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{escape(t)}</h2>{html}</section>' for sid, t, html in sections)
    models = ", ".join(str(r["model"]) for r in records)
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>bert4rec report: {escape(run_dir.name)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>bert4rec report: {escape(run_dir.name)}</h1>"
        f"<p>{escape(models)} &middot; generated {made}</p><nav>{nav}</nav></header>"
        f"<main>{body}</main></body></html>\n"
    )


def write_report(
    run_dir: Path, out: Path | None = None, benchmarks: Path | None = None, n_users: int = 3, k: int = 10
) -> Path:
    """Render the report and write it atomically (temporary file, then rename) to `out`
    (default `run_dir/report.html`). Returns the path written."""
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    html = render_report(run_dir, benchmarks, n_users, k)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, html, mode=0o644)  # readable by all: a report is meant to be shared
    return out
