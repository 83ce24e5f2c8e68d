"""The README is the front page: its links resolve, its Python example runs against the library as it
is, and its test command is the one CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_links_point_at_files_in_the_repo():
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", README) if not re.match(r"[a-z]+://", t)]
    assert targets, "the README links to no docs page"
    missing = [t for t in targets if not (ROOT / t.split("#")[0]).exists()]
    assert missing == [], f"README links to missing files: {missing}"


def test_ci_runs_the_readme_test_command():
    assert "bash scripts/test.sh" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^bash scripts/test\.sh\b", ci, re.M), ".ci/run must run the README's test command"


@pytest.mark.slow  # trains one epoch on the demo data (tens of seconds on a busy 2-core machine)
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) == 1, "expected one Python example in the README"
    code = blocks[0]
    # the example as printed, with one epoch instead of ten to keep the suite fast
    assert '{"train": {"epochs": 10}}' in code
    code = code.replace('{"train": {"epochs": 10}}', '{"train": {"epochs": 1}}')
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"test NDCG@10 0\.\d{4}", lines[-4]), lines
    ranks = [line.split()[0] for line in lines[-3:]]
    assert ranks == ["1", "2", "3"], lines
    assert (tmp_path / "runs" / "py-demo" / "bert4rec" / "model").is_dir()
