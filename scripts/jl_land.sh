#!/usr/bin/env bash
# Regenerates the "JL samples that land on the data" table of the README and docs/jl_atom.md
# (issue 9): specs/jl_gmm_long.diff against its Gaussian counterpart specs/gauss_gmm_long.diff
# (same data, network, 24 000 training steps), training seeds 0, 1, 2 (`difc run --sweep`). Each
# checkpoint is sampled at 25 and 100 steps with each model's second-order multistep solver on
# its log-SNR grid (JL: exponential_ode_2m on the jump log-odds grid; Gaussian: dpmpp_2m), the
# first-order exponential ODE on the same grid, and the exponential SDE on the uniform grid;
# 15 000 samples against 15 000 held-out points. Prints mean ± sd over the seeds.
#   scripts/jl_land.sh            # about 15 minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
DIFC=target/release/difc
OUT=${OUT:-runs/jl_land}
SEEDS=${SEEDS:-0,1,2}
export DIFC_QUIET=1
# model:solver:grid, the metrics file's suffix follows `difc sample`'s naming.
JL="exponential_ode_2m:log_snr exponential_ode:log_snr exponential_sde:uniform"
GAUSS="dpmpp_2m:log_snr exponential_ode:log_snr exponential_sde:uniform"
for model in jl gauss; do
  $DIFC run "specs/${model}_gmm_long.diff" --out "$OUT/$model" --sweep "train.seed=$SEEDS" "$@" > /dev/null
  [ $model = jl ] && cells=$JL || cells=$GAUSS
  for run in "$OUT/$model"/sweep/*/; do
    for cell in $cells; do
      solver=${cell%%:*} grid=${cell##*:}
      suffix=$([ "$grid" = uniform ] && echo "" || echo "_$grid")
      for steps in 25 100; do
        [ -f "$run/metrics_${solver}_${steps}${suffix}.yaml" ] ||
          $DIFC sample "$run" --solver "$solver" --grid "$grid" --steps $steps > /dev/null
      done
    done
  done
done
# mean ± sd of KEY over the seed runs of MODEL in metrics file NAME
stat() {
  cat "$OUT/$1"/sweep/*/"$2" | grep "^$3:" | awk '{x[NR]=$2; s+=$2} END {m=s/NR; for(i=1;i<=NR;i++) v+=(x[i]-m)^2; printf "%.3f ± %.3f", m, (NR>1 ? sqrt(v/(NR-1)) : 0)}'
}
echo "| model | solver, grid | steps | mode_fraction | mode_weight_tv | PRD maxF1 | precision | recall |"
echo "|---|---|---|---|---|---|---|---|"
for model in jl gauss; do
  [ $model = jl ] && cells=$JL || cells=$GAUSS
  for cell in $cells; do
    solver=${cell%%:*} grid=${cell##*:}
    suffix=$([ "$grid" = uniform ] && echo "" || echo "_$grid")
    for steps in 25 100; do
      f="metrics_${solver}_${steps}${suffix}.yaml"
      row="| $model | $solver, $grid | $steps"
      for key in mode_fraction mode_weight_tv prd_max_f1 precision recall; do
        row="$row | $(stat $model "$f" $key)"
      done
      echo "$row |"
    done
  done
done
