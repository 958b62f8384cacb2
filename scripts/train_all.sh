#!/usr/bin/env bash
# Train every model that ships a checkpoint, with its full recipe, one after the other.
# Usage: scripts/train_all.sh [NAME[.TAG] ...]   (logs in runs/NAME[.TAG].log; rerun resumes an interrupted model)
# A tag names the data set of the weights: cnn-small.mnist trains cnn-small on MNIST.
# Without names, the list comes from the registry (`fashionzoo list --json`: every entry with released weights),
# shortest recorded training first.
set -u
cd "$(dirname "$0")/.."
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  listing=$(fashionzoo list --json) || { echo "train_all.sh: 'fashionzoo list --json' failed (is fashionzoo installed?)" >&2; exit 1; }
  read -r -a models <<< "$(python3 -c '
import json, sys
entries = [e for e in json.load(sys.stdin) if e["weights_available"]]
entries.sort(key=lambda e: (e["metrics"] or {}).get("wall_time_s") or 0)
print(" ".join(e["name"] for e in entries))' <<< "$listing")"
  [ ${#models[@]} -gt 0 ] || { echo "train_all.sh: the registry lists no model with released weights" >&2; exit 1; }
fi
mkdir -p runs
for name in "${models[@]}"; do
  [ -f "runs/$name/metrics.json" ] && { echo "$name: done already"; continue; }
  resume=()
  { [ -d "runs/$name/backup" ] || [ -d "runs/$name/members" ]; } && resume=(--resume)  # members: an ensemble's
  echo "$(date +%T) training $name ${resume[*]}"
  fashionzoo train "$name" --out "runs/$name" "${resume[@]}" > "runs/$name.log" 2>&1 || echo "$name FAILED (see runs/$name.log)"
  tail -n 1 "runs/$name.log"
done
