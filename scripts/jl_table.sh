#!/usr/bin/env bash
# Regenerates the JL-vs-Gaussian table of the README (Baule 2025, Figure 1 setting, scaled to a
# 2-core machine): trains JL and the Gaussian OU baseline on the swiss roll and the unbalanced
# 3x3 GMM with the same network and budget, then samples each with the exponential-integrator
# ODE and SDE at 25 and 100 steps and scores 15 000 samples against 15 000 held-out points
# (PRD maxF1 with 100 k-means clusters, 10 clusterings).
#   scripts/jl_table.sh            # about 10 minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
DIFC=target/release/difc
OUT=${OUT:-runs/jl_table}
export DIFC_QUIET=1
for spec in jl_swiss_roll gauss_swiss_roll jl_gmm gauss_gmm; do
  if [ ! -f "$OUT/$spec/metrics.yaml" ]; then
    rm -rf "$OUT/$spec"
    $DIFC run "specs/$spec.diff" --out "$OUT/$spec" "$@" > /dev/null
  fi
  for solver in exponential_ode exponential_sde; do
    for steps in 25 100; do
      [ -f "$OUT/$spec/metrics_${solver}_${steps}.yaml" ] || $DIFC sample "$OUT/$spec" --solver $solver --steps $steps > /dev/null
    done
  done
done
value() { grep "^$2:" "$1" | awk '{printf "%.3f", $2}'; }
echo "| data | model | ODE 25 | ODE 100 | SDE 25 | SDE 100 |"
echo "|---|---|---|---|---|---|"
for data in swiss_roll gmm; do
  for model in jl gauss; do
    d="$OUT/${model}_${data}"
    row="| $data | $model"
    for solver in exponential_ode exponential_sde; do
      for steps in 25 100; do
        row="$row | $(value "$d/metrics_${solver}_${steps}.yaml" prd_max_f1)"
      done
    done
    echo "$row |"
  done
done
