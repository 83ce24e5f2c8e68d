#!/usr/bin/env bash
# Set up, then run the main job: prepare data -> train BERT4Rec, SASRec and baselines -> evaluate
# (full ranking and sampled) -> save models -> print example recommendations with titles.
# Uses ML-1M when a local copy is found ($BERT4REC_DATA_DIR or ../shared/data/ml-1m), else a
# generated demo dataset. QUICKSTART_MINUTES bounds each Transformer's training (default 4), but
# never below QUICKSTART_MIN_STEPS optimiser steps (default 450): on a busy machine 4 minutes can be
# under one epoch, still on the initial plateau below popularity (docs/first-run.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=${BERT4REC_DATA_DIR:-../shared/data/ml-1m}
MINUTES=${QUICKSTART_MINUTES:-4}
MIN_STEPS=${QUICKSTART_MIN_STEPS:-450}
if [ -f "$DATA/ratings.dat" ]; then
  echo "ML-1M found in $DATA: short run (${MINUTES} min per Transformer, at least ${MIN_STEPS} steps)"
  .venv/bin/bert4rec compare --preset ml-1m --data-dir "$DATA" --out runs/quickstart \
    --set train.max_minutes="$MINUTES" --set train.min_steps="$MIN_STEPS" \
    --set train.limit_val_users=2000 "$@"
else
  echo "no ML-1M copy at $DATA: using a generated demo dataset"
  .venv/bin/bert4rec compare --preset demo --out runs/quickstart "$@"
fi
