#!/bin/bash
# Evaluate every solved run below a search folder on its task's grids (the search trains with
# evaluation.enabled=false), for compare.py: each result folder gets results.json from
# evaluate.py and, beside it, the run's summary.json and .hydra/config.yaml.
#   scripts/evaluate_solved.sh multirun/search multirun/search_eval   # then
#   python compare.py multirun/search_eval --by optimizer.lr --out docs/results/search_eval
# Resumable: a run already evaluated is skipped.
set -euo pipefail
search=${1:?usage: $0 SEARCH_FOLDER OUT_FOLDER}
out=${2:?usage: $0 SEARCH_FOLDER OUT_FOLDER}
python=${PYTHON:-.venv/bin/python}
for summary in $(find "$search" -name summary.json | sort); do
  run=$(dirname "$summary")
  grep -q '"solved": true' "$summary" || continue
  target="$out/${run#"$search"/}"
  target=${target//=/-}  # Hydra's override grammar does not allow '=' or ',' in a value
  target=${target//,/_}
  [ -f "$target/results.json" ] && continue
  "$python" evaluate.py "ckpt_path='$run/checkpoints/best.ckpt'" "hydra.run.dir='$target'" \
    > /dev/null 2>&1 || { echo "failed: $run (see $target/evaluate.log)"; continue; }
  cp "$summary" "$target/"
  mkdir -p "$target/.hydra" && cp "$run/.hydra/config.yaml" "$target/.hydra/"
  echo "evaluated: $target"
done
