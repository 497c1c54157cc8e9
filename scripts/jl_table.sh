#!/usr/bin/env bash
# Regenerates the JL-vs-Gaussian table of the README (Baule 2025, Figure 1 setting, scaled to a
# 2-core machine): trains JL and the Gaussian OU baseline on the swiss roll and the unbalanced
# 3x3 GMM with the same network and budget, for training seeds 0, 1, 2 (`difc run --sweep`),
# then samples each checkpoint with the exponential-integrator ODE and SDE at 25 and 100 steps
# and scores 15 000 samples against 15 000 held-out points. Prints, per cell, the mean ± sd over
# the three seeds of PRD maxF1 (100 k-means clusters, 10 clusterings) and of mode_fraction on
# the GMM.
#   scripts/jl_table.sh            # about 25 minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
DIFC=target/release/difc
OUT=${OUT:-runs/jl_table}
SEEDS=${SEEDS:-0,1,2}
export DIFC_QUIET=1
for spec in jl_swiss_roll gauss_swiss_roll jl_gmm gauss_gmm; do
  $DIFC run "specs/$spec.diff" --out "$OUT/$spec" --sweep "train.seed=$SEEDS" "$@" > /dev/null
  for run in "$OUT/$spec"/sweep/*/; do
    for solver in exponential_ode exponential_sde; do
      for steps in 25 100; do
        [ -f "$run/metrics_${solver}_${steps}.yaml" ] || $DIFC sample "$run" --solver $solver --steps $steps > /dev/null
      done
    done
  done
done
# mean ± sd of KEY over the seed runs of SPEC for SOLVER at STEPS
cell() {
  local spec=$1 solver=$2 steps=$3 key=$4
  cat "$OUT/$spec"/sweep/*/metrics_${solver}_${steps}.yaml | grep "^$key:" | awk '{x[NR]=$2; s+=$2} END {m=s/NR; for(i=1;i<=NR;i++) v+=(x[i]-m)^2; printf "%.3f ± %.3f", m, (NR>1 ? sqrt(v/(NR-1)) : 0)}'
}
for key in prd_max_f1 mode_fraction; do
  echo
  echo "$key (mean ± sd over training seeds $SEEDS)"
  echo "| data | model | ODE 25 | ODE 100 | SDE 25 | SDE 100 |"
  echo "|---|---|---|---|---|---|"
  for data in swiss_roll gmm; do
    [ "$key" = mode_fraction ] && [ "$data" = swiss_roll ] && continue
    for model in jl gauss; do
      row="| $data | $model"
      for solver in exponential_ode exponential_sde; do
        for steps in 25 100; do
          row="$row | $(cell "${model}_${data}" $solver $steps $key)"
        done
      done
      echo "$row |"
    done
  done
done
