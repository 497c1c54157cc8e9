#!/usr/bin/env bash
# Regenerates the README's solver × grid × steps table: one trained run per spec, then
# `difc sample RUN --solver S --grid G --steps K --seed SEED` for every combination the
# process offers, printing PRD maxF1 (mean ± sd over the seeds) and the DLPM MMD (mean) as a Markdown table.
#   scripts/solver_table.sh [OUT_DIR] [SEEDS]      (default runs/solver_table, "1 2 3")
# Samples already measured (their metrics_table_*.yaml) are reused; PARSE_ONLY=1 only tabulates them
# (missing ones show as nan).
# Trains specs/swiss_roll_vp.diff and specs/cosine.diff at their own budgets if OUT_DIR lacks them.
set -euo pipefail
DIFC=${DIFC:-target/release/difc}
OUT=${1:-runs/solver_table}
SEEDS=${2:-1 2 3}
N=${N:-5000}
mkdir -p "$OUT"
for spec in swiss_roll_vp cosine; do
  [ -f "$OUT/$spec/checkpoint.safetensors" ] || "$DIFC" run "specs/$spec.diff" --out "$OUT/$spec" --set sample.steps=25 --set sample.solver=ddim >/dev/null
done
metric() { awk -v k="$1" '$1 == k":" {print $2}' "$2"; }
for spec in swiss_roll_vp cosine; do
  echo "### $spec ($N samples, seeds $SEEDS)"
  echo
  echo "| solver | grid | maxF1 @10 | @25 | @100 | MMD @10 | @25 | @100 |"
  echo "|---|---|---|---|---|---|---|---|"
  for solver in ode_euler ode_heun euler_maruyama exponential_ode exponential_sde ddim dpmpp_2m; do
    for grid in uniform log_snr edm; do
      f1s=(); mmds=()
      for steps in 10 25 100; do
        fs=""; ms=""
        for seed in $SEEDS; do
          out="$OUT/$spec/table_${solver}_${grid}_${steps}_${seed}.npy"
          y="$OUT/$spec/metrics_table_${solver}_${grid}_${steps}_${seed}.yaml"
          if [ -f "$y" ] || { [ -z "${PARSE_ONLY:-}" ] && "$DIFC" sample "$OUT/$spec" --solver "$solver" --grid "$grid" --steps "$steps" --seed "$seed" --n "$N" --out "$out" >/dev/null 2>&1; }; then
            fs="$fs $(metric prd_max_f1 "$y")"; ms="$ms $(metric mmd_dlpm "$y")"
          else fs="$fs nan"; ms="$ms nan"; fi
        done
        f1s+=("$(echo $fs | awk '{s=0;q=0;for(i=1;i<=NF;i++){s+=$i;q+=$i*$i}; m=s/NF; v=q/NF-m*m; if(v<0)v=0; if(NF>1) printf "%.3f ± %.3f", m, sqrt(v); else printf "%.3f", m}')")
        mmds+=("$(echo $ms | awk '{s=0;for(i=1;i<=NF;i++)s+=$i; printf "%.1e", s/NF}')")
      done
      echo "| $solver | $grid | ${f1s[0]} | ${f1s[1]} | ${f1s[2]} | ${mmds[0]} | ${mmds[1]} | ${mmds[2]} |"
    done
  done
  echo
done
