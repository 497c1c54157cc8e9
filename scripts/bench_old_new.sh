#!/usr/bin/env bash
# The training-step benchmark of the back end *before* its rebuild into one Family trait on
# tensors (issue 8; the commit before e529414) against the current tree, side by side in one
# run: both bench binaries are built first, then run alternately ROUNDS times on the same
# benchmarks (`train step vp …`, `train step jl …`: the same 4×128 MLP, batch 512, 2-D data,
# the same names in both revisions), so that load on the machine hits both alike. Prints each
# round's criterion point estimate, the median per revision and the ratio new/old
# (< 1: the new back end is faster).
#   scripts/bench_old_new.sh              # ≈ 10 min on 2 cores once built (the old build ≈ 5 min)
#   OLD=<commit> ROUNDS=5 scripts/bench_old_new.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
OLD=${OLD:-e529414^}
ROUNDS=${ROUNDS:-3}
FILTER=${FILTER:-^train step (vp|jl) }
work=$root/target/bench-old
src=$work/src
mkdir -p "$work"
if [ ! -d "$src" ]; then
  git worktree add --detach "$src" "$OLD" > /dev/null
fi
git -C "$src" checkout --quiet --detach "$OLD"
# The old tree builds into its own target dir, seeded from ours so that only difc recompiles.
if [ ! -d "$work/target/release" ] && [ -d "$root/target/release/deps" ]; then
  mkdir -p "$work/target"
  cp -a "$root/target/release" "$work/target/release"
fi
bench_exe() { # DIR TARGET_DIR -> path of the built difc_bench executable
  (cd "$1" && CARGO_TARGET_DIR=$2 cargo bench --bench difc_bench --no-run --message-format=json 2> /dev/null) |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "difc_bench" and .executable != null) | .executable' | tail -1
}
echo "building the old revision ($(git -C "$src" log -1 --format='%h %s' | cut -c1-70)) …" >&2
old_exe=$(bench_exe "$src" "$work/target")
echo "building the current tree …" >&2
new_exe=$(bench_exe "$root" "$root/target")
[ -x "$old_exe" ] && [ -x "$new_exe" ] || { echo "a bench binary did not build" >&2; exit 1; }
if [ -n "${BUILD_ONLY:-}" ]; then
  echo "built: $old_exe and $new_exe" >&2
  exit 0
fi
log=$work/rounds.txt
: > "$log"
# one criterion run of EXE; prints "name<TAB>estimate in ms" per benchmark
run_one() {
  (cd "$2" && "$1" --bench --noplot --warm-up-time 2 --measurement-time 8 "$FILTER" 2> /dev/null) |
    awk '/^train step/ {name=$0; sub(/ +time:.*/, "", name)}
         /time:/ {
           i = index($0, "[") ; split(substr($0, i + 1), f, " ");
           v = f[3]; u = f[4]; ms = (u == "µs" ? v / 1000 : (u == "s" ? v * 1000 : v));
           printf "%s\t%.4f\n", name, ms }'
}
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS …" >&2
  run_one "$old_exe" "$src" | sed "s/^/old\t$r\t/" >> "$log"
  run_one "$new_exe" "$root" | sed "s/^/new\t$r\t/" >> "$log"
done
python3 - "$log" <<'EOF'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
names = sorted({r[2] for r in rows})
print("| benchmark | old (ms, per round) | new (ms, per round) | median old | median new | new / old |")
print("|---|---|---|---|---|---|")
for n in names:
    o = [float(r[3]) for r in rows if r[2] == n and r[0] == "old"]
    w = [float(r[3]) for r in rows if r[2] == n and r[0] == "new"]
    if not o or not w:
        continue
    mo, mw = st.median(o), st.median(w)
    print(f"| {n} | {', '.join(f'{x:.3f}' for x in o)} | {', '.join(f'{x:.3f}' for x in w)} | {mo:.3f} | {mw:.3f} | {mw / mo:.3f} |")
EOF
