"""The import layering stays what the docs promise: data -> models -> training / evaluation ->
artifacts -> inference -> api / cli, with no upward imports. Read from the source with `ast` (every
import, including those inside functions; imports under `if TYPE_CHECKING:` are annotations only
and are not counted)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bert4rec"

# what each part of the package must never import (a part: a subpackage or a top-level module)
_ABOVE_DATA = {"training", "evaluation", "inference", "artifacts", "pipeline", "report", "api", "cli"}
FORBIDDEN: dict[str, set[str]] = {
    "data": {"models", *_ABOVE_DATA},
    "models": {"data", *_ABOVE_DATA},  # tensors only; type-only imports are not counted
    "text": {"models", *_ABOVE_DATA},  # item text and its vectors: shared by training and serving
    "training": {"inference", "artifacts", "pipeline", "report", "jobs", "api", "cli"},
    "evaluation": {"training", "inference", "artifacts", "pipeline", "report", "jobs", "api", "cli"},
    "artifacts": {"training", "inference", "pipeline", "report", "jobs", "api", "cli"},
    "inference": {"training", "pipeline", "report", "jobs", "api", "cli"},
    # the training path reaches no serving code: scoring and item text live in shared modules
    "pipeline": {"inference", "api", "cli"},
    "report": {"training", "pipeline", "api", "cli"},
    "api": {"training", "pipeline", "report", "cli"},
}


def _part(module: str) -> str:
    """'bert4rec.training.fit' -> 'training'; 'bert4rec.report' -> 'report'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(path: Path) -> set[str]:
    """The bert4rec modules `path` imports at run time."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("bert4rec"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bert4rec"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from bert4rec import io`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def _module_name(path: Path) -> str:
    return ".".join(("bert4rec", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_upward_imports(path):
    part = _part(_module_name(path))
    forbidden = FORBIDDEN.get(part, set())
    bad = sorted(m for m in runtime_imports(path) if _part(m) in forbidden and _part(m) != part)
    assert not bad, f"{path.relative_to(SRC)} ({part}) must not import {bad}"


def test_the_api_talks_only_to_the_recommender_facade():
    for path in (SRC / "api").rglob("*.py"):
        inference = {m for m in runtime_imports(path) if _part(m) == "inference"}
        assert all(m.startswith("bert4rec.inference.recommender") for m in inference), (path, inference)


def test_the_checker_sees_imports_inside_functions_and_skips_type_checking(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from bert4rec.training.fit import FitResult\n"
        "def f():\n    from bert4rec.inference import scoring\n    import bert4rec.api.app\n"
    )
    assert runtime_imports(source) == {
        "bert4rec.inference",
        "bert4rec.inference.scoring",
        "bert4rec.api.app",
    }
