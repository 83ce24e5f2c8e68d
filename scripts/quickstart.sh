#!/usr/bin/env bash
# Set up, then run the main job: prepare data -> train BERT4Rec, SASRec and baselines -> evaluate
# (full ranking and sampled) -> save models -> print example recommendations with titles.
# Uses ML-1M when a local copy is found ($BERT4REC_DATA_DIR or ../shared/data/ml-1m), else a
# generated demo dataset. QUICKSTART_MINUTES bounds each Transformer's training (default 4), but
# never below a number of optimiser steps: on a busy machine 4 minutes can be under one epoch, still
# on the initial plateau below popularity. BERT4Rec (QUICKSTART_BERT4REC_STEPS, default 450) needs
# more steps than SASRec (QUICKSTART_SASREC_STEPS, default 150) to pass MF (docs/first-run.md).
# BERT4Rec trains without dropout and without length buckets: per optimiser step it learned faster
# that way in the 6-minute study, and a step is cheaper (docs/first-run.md, closing the gap).
# Its item embeddings start from ALS factors (the ml-1m preset): off the plateau sooner (same page).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=${BERT4REC_DATA_DIR:-../shared/data/ml-1m}
MINUTES=${QUICKSTART_MINUTES:-4}
BERT4REC_STEPS=${QUICKSTART_BERT4REC_STEPS:-450}
SASREC_STEPS=${QUICKSTART_SASREC_STEPS:-150}
if [ -f "$DATA/ratings.dat" ]; then
  echo "ML-1M found in $DATA: short run (${MINUTES} min per Transformer, at least" \
    "${BERT4REC_STEPS} BERT4Rec / ${SASREC_STEPS} SASRec optimiser steps)"
  .venv/bin/bert4rec compare --preset ml-1m --data-dir "$DATA" --out runs/quickstart \
    --set train.max_minutes="$MINUTES" --set per_model.bert4rec.train.min_steps="$BERT4REC_STEPS" \
    --set per_model.sasrec.train.min_steps="$SASREC_STEPS" --set train.limit_val_users=2000 \
    --set per_model.bert4rec.model.dropout=0.0 --set per_model.bert4rec.train.bucket_by_length=false "$@"
else
  echo "no ML-1M copy at $DATA: using a generated demo dataset"
  .venv/bin/bert4rec compare --preset demo --out runs/quickstart "$@"
fi
