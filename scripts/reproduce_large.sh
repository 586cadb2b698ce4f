#!/usr/bin/env bash
# The powered paper tables (issue 20): `mingle-bench reproduce --data synthetic:large --precision bf16
# --out results`, trained in stages so that a session that stops part-way leaves whole seeds behind.
#
#   bash scripts/reproduce_large.sh            # from the repository root, in the installed venv
#
# The stages only order the work. Training seeds and the model list are not part of a results
# folder's fingerprint, so every stage resumes the cells of the one before by input hash, and the
# last stage is exactly the single command above (5 training seeds, the default rows). Stopping
# at any point and running the script again continues where it stopped; an interrupted cell is
# retrained from its start. Run it in the background on a shared machine:
#
#   nohup bash scripts/reproduce_large.sh > reproduce_large.log 2>&1 &
#
# STAGES sets the seed counts of the stages (default "1 3 5"): STAGES="4 5" adds seed 3, composes the
# tables, then adds seed 4, so a session of about 1.5 h leaves the tables of one more whole seed.
#
# Order inside a stage: the references first (seconds each), then the sequence models, MINGLE and
# its ablations and HypEHR; then MINGLE and its ablations with the tfidf encoder at 256 dimensions
# (their own folders, `<data-id>-enc-tfidf-dim-256`: the setting whose note vectors kept DNR, smoking
# and frailty as well as the raw TF-IDF terms in the probe on synthetic:default, docs/encoders.md;
# the default 64 lost part of them); HyperGAT last (its full-graph steps cost the most: about 20
# minutes a cell at this size on 2 cores); then the paper tables once more, so that the default
# encoder's note-channel table includes the tfidf folders.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${MINGLE_BENCH:-mingle-bench}
COMMON=(reproduce --data synthetic:large --out results)
ORDER=prior,logreg,tfidf-lr,codes-notes-lr,gbm,note-mlp,retain,gram,retain-index,gram-index,mingle,mingle-no-notes,mingle-no-concept,hypehr
TF_ORDER=mingle,mingle-no-notes,mingle-no-concept
TF_ENCODER="tfidf?dim=256"

for seeds in ${STAGES:-1 3 5}; do
  echo "== reproduce_large: training seeds 0..$((seeds - 1)) (MiniLM bf16 note and concept vectors)"
  "$MB" "${COMMON[@]}" --precision bf16 --seeds "$seeds" --models "$ORDER"
  echo "== reproduce_large: training seeds 0..$((seeds - 1)) (MINGLE with the $TF_ENCODER encoder)"
  "$MB" "${COMMON[@]}" --seeds "$seeds" --models "$TF_ORDER" --encoder "$TF_ENCODER"
  echo "== reproduce_large: training seeds 0..$((seeds - 1)) (HyperGAT)"
  "$MB" "${COMMON[@]}" --precision bf16 --seeds "$seeds" --models "$ORDER,hypergat"
  "$MB" "${COMMON[@]}" --precision bf16 --tables-only
done
