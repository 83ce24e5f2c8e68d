#!/usr/bin/env bash
# Create .venv and install bert4rec with its dev tools. Idempotent; safe to re-run.
# torch is pinned in the same pip command so pip never pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0" numpy -e ".[dev]"
