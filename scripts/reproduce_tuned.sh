#!/usr/bin/env bash
# The paper tables under equal tuning (issue 20, item 6):
#
#   mingle-bench reproduce --protocol tuned --trials 20 --out results
#
# on the default synthetic cohort. Every row of the tables, references included, gets the same
# number of Optuna trials on the validation split under the same step budget (the gradient-trained
# models also choose eval_every from {5, 10, 20}); each then trains its 5 seeds with its best
# parameters into <task>/<data-id>-tuned/. The studies' best parameters and trial lists land in
# results/tuning/ (committed beside the tables); the studies themselves in results/optuna.db
# (git-ignored; optuna-dashboard opens it).
#
#   bash scripts/reproduce_tuned.sh            # from the repository root, in the installed venv
#   nohup bash scripts/reproduce_tuned.sh > reproduce_tuned.log 2>&1 &
#
# Resumable at any point: a study with trials left runs only those (create_study(load_if_exists)),
# a finished study is reused, and finished cells are skipped by input hash. cvd goes first (its
# trials cost seconds at this size), then phenotype; the last call is exactly the command above and
# writes the paper tables of both tasks. DATA=synthetic:large and TRIALS=N override the defaults
# (the powered cohort costs about 3.5 h on cvd and 11 h on phenotype per 20 trials on 2 cores,
# docs/runner.md).
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${MINGLE_BENCH:-mingle-bench}
COMMON=(reproduce --protocol tuned --trials "${TRIALS:-20}" --out results)
if [ -n "${DATA:-}" ]; then COMMON+=(--data "$DATA"); fi

for task in cvd phenotype; do
  echo "== reproduce_tuned: $task (${TRIALS:-20} trials per model, then 5 seeds)"
  "$MB" "${COMMON[@]}" --tasks "$task"
done
echo "== reproduce_tuned: the paper tables of both tasks"
"$MB" "${COMMON[@]}"
