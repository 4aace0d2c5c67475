#!/usr/bin/env bash
# How far decimation moves the fine stage's surface: for each gso-mini object, the fine mesh of an
# oracle bench (renders of the scan as the orbit, the visual hull, the DMTet fine stage) decimated
# to 2,000, 5,000 and 20,000 faces (`orbitmesh export --faces`), and the Chamfer distance of each
# against the fine mesh (`orbitmesh eval`, the gso protocol: the fine mesh's normalised frame).
#   scripts/bench-decimation.sh [PRESET]      (default fast)
# Also times `orbitmesh export --lods 3` of each fine mesh (2 cores here).
set -euo pipefail
preset="${1:-fast}"
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orbitmesh-target}"
(cd "$root" && cargo build --release --quiet)
bin="$CARGO_TARGET_DIR/release/orbitmesh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin" bench "$root/data/gso-mini" --oracle --preset "$preset" --coarse hull --device cpu \
  --out "$work/bench" > /dev/null
printf '%-20s %8s %12s %12s %12s %14s\n' object "fine" "2k" "5k" "20k" "3 LODs (s)"
for fine in "$work"/bench/*/fine/fine.obj; do
  name="$(basename "$(dirname "$(dirname "$fine")")")"
  faces="$(grep -c '^f ' "$fine")"
  row=()
  for budget in 2000 5000 20000; do
    "$bin" export "$fine" -o "$work/$name-$budget.obj" --faces "$budget" > /dev/null
    "$bin" eval "$work/$name-$budget.obj" "$fine" --json "$work/$name-$budget.json" > /dev/null
    row+=("$(python3 -c "import json,sys; print('%.5f' % json.load(open(sys.argv[1]))['report']['metrics']['chamfer'])" "$work/$name-$budget.json")")
  done
  start=$(date +%s.%N)
  "$bin" export "$fine" -o "$work/$name.glb" --lods 3 > /dev/null
  seconds=$(echo "$(date +%s.%N) - $start" | bc)
  printf '%-20s %8s %12s %12s %12s %14.2f\n' "$name" "$faces" "${row[@]}" "$seconds"
done
