#!/usr/bin/env bash
# Set up (if needed) and run the lint gate and the test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy
# the docs site: --strict turns a broken link or anchor into a failure; built into a temporary
# folder, never committed (no -q: it would hide the warnings that --strict counts)
SITE=$(mktemp -d)
trap 'rm -rf "$SITE"' EXIT
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$SITE"
.venv/bin/python -m pytest -q "$@"
