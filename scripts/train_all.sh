#!/usr/bin/env bash
# Train every model that ships a checkpoint, with its full recipe, one after the other.
# Usage: scripts/train_all.sh [NAME[.TAG] ...]   (logs in runs/NAME[.TAG].log; rerun resumes an interrupted model)
# A tag names the data set of the weights: cnn-small.mnist trains cnn-small on MNIST.
set -u
cd "$(dirname "$0")/.."
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(lenet5 cnn cnn-small cnn-small-tuned mlp-small mlp-small-tuned \
  mlp-64-128-64-32 mlp-64-128-32 mlp-64-32 mlp-128-64 mlp lenet5-tuned zoo-resnet zoo-ensemble \
  cnn-small.mnist cnn-small-tuned.mnist mlp-small.mnist mlp-small-tuned.mnist)
mkdir -p runs
for name in "${models[@]}"; do
  [ -f "runs/$name/metrics.json" ] && { echo "$name: done already"; continue; }
  resume=()
  { [ -d "runs/$name/backup" ] || [ -d "runs/$name/members" ]; } && resume=(--resume)  # members: an ensemble's
  echo "$(date +%T) training $name ${resume[*]}"
  fashionzoo train "$name" --out "runs/$name" "${resume[@]}" > "runs/$name.log" 2>&1 || echo "$name FAILED (see runs/$name.log)"
  tail -n 1 "runs/$name.log"
done
