"""`bert4rec report`: a self-contained HTML page for a run folder, checked as text and in Chromium."""

from __future__ import annotations

import json
import re

import pytest
from browser_helpers import chromium_page, save_screenshot
from helpers import tiny_config

from bert4rec.report import ReportError, markdown_to_html, model_history, render_report, write_report


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_prepared):
    """A compare run folder: BERT4Rec (2 epochs, saved bundle) and popularity, with results files."""
    from bert4rec.pipeline import compare

    out = tmp_path_factory.mktemp("compare")
    compare(["bert4rec", "popularity"], tiny_config(), out, prepared=tiny_prepared, progress=False)
    return out


@pytest.fixture
def sweeps(tmp_path):
    """A benchmarks/results/sweeps folder with one sweep table (as benchmarks/sweep.py writes it) and plot."""
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "sweep_demo.md").write_text(
        "bert4rec on generated: one hyperparameter at a time.\n\n"
        "| parameter | value | best val NDCG@10 | epochs | train s |\n|---|---:|---:|---:|---:|\n"
        "| model.max_len | 50 | 0.1234 | 3 | 60.0 |\n| train.mask_prob | 0.4 | 0.2345 | 3 | 60.0 |\n"
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(folder / "sweep_demo.png")
    plt.close(fig)
    return folder


def test_report_has_every_section_and_no_outside_resources(run_dir, sweeps, tmp_path):
    out = write_report(run_dir, tmp_path / "r" / "report.html", benchmarks=sweeps, n_users=2, k=5)
    html = out.read_text()
    for section in ("summary", "metrics", "curves", "long-tail", "sweeps", "examples"):
        assert f'<section id="{section}">' in html, section
    # full and sampled metrics are separate, labelled column groups
    assert "Full ranking (target vs all items)" in html
    assert "Sampled: 100 negatives, uniform" in html and "Sampled: 100 negatives, popularity" in html
    table = html.split('id="metrics-table"')[1].split("</table>")[0]
    assert table.count("<tr>") == 4 and "bert4rec" in table and "popularity" in table
    assert html.count('src="data:image/png;base64,') == 3  # curves, long tail, the sweep's plot
    assert "<td>model.max_len</td>" in html and "0.2345" in html
    # example users with titles and genres; nothing is fetched from outside the file
    assert html.count('class="user"') == 2 and "Item " in html and "Genre" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temporary file left behind
    assert out.stat().st_mode & 0o044  # readable by others, unlike mkstemp's default


def test_report_numbers_come_from_the_records(run_dir):
    record = json.loads((run_dir / "results" / "results_bert4rec.json").read_text())
    html = render_report(run_dir, n_users=0)
    assert f"{record['metrics']['full']['ndcg@10']:.4f}" in html
    assert f"{record['metrics']['sampled_uniform']['ndcg@10']:.4f}" in html
    assert 'id="examples"' not in html  # no example users asked for


def test_history_falls_back_to_the_csv_logs(run_dir):
    record = json.loads((run_dir / "results" / "results_bert4rec.json").read_text())
    from_logs = model_history({**record, "history": []}, run_dir)
    assert [r["epoch"] for r in from_logs] == [r["epoch"] for r in record["history"]]
    assert model_history({"model": "popularity"}, run_dir) == []


def test_report_of_an_empty_folder_says_what_to_run(tmp_path):
    with pytest.raises(ReportError, match=r"no result records in .*bert4rec train --out"):
        write_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_markdown_tables_are_escaped():
    html = markdown_to_html("A <b>note</b>\n\n| a | b |\n|---|---:|\n| <x> | 1 |\n")
    assert "&lt;b&gt;note" in html and "<td>&lt;x&gt;</td>" in html and "---" not in html


def test_report_command(run_dir, tmp_path):
    from typer.testing import CliRunner

    from bert4rec.cli import app

    out = tmp_path / "cli.html"
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(out), "--users", "1"])
    assert result.exit_code == 0, result.output
    assert "self-contained" in result.output and out.exists()
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no result records" in missing.output


@pytest.mark.slow
def test_report_renders_in_chromium(run_dir, sweeps, tmp_path):
    """Load the file in headless Chromium: sections, tables and images are there and drawn."""
    out = write_report(run_dir, tmp_path / "report.html", benchmarks=sweeps, n_users=2, k=5)
    with chromium_page() as page:
        page.goto(out.as_uri())
        assert page.title() == f"bert4rec report: {run_dir.name}"
        assert page.locator("#metrics-table tr").count() == 4
        assert page.locator("#long-tail-table").is_visible()
        assert page.locator(".user").count() == 2
        assert page.locator(".user table tr").count() == 2 * 6  # header + top 5, per user
        # every embedded PNG decoded (a broken data URI has naturalWidth 0)
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == 3 and min(widths) > 100
        page.click("nav a[href='#examples']")
        shot = save_screenshot(page, tmp_path, "report")
    assert shot.stat().st_size > 50_000
