#!/usr/bin/env bash
# The coarse stage against its peer (../shared/peers/ngp_torch.py, Instant-NGP in eager PyTorch):
#   1. training throughput in the peer's fixed-sample mode (the same rays × samples per step, no
#      occupancy grid, the same model), samples/s, median of RUNS runs each;
#   2. time to a held-out PSNR of 25 dB with each tool's own defaults (frames 3, 10, 17 held out).
# Both on the same orbit: the GSO bunny, 21 frames of 128² at 10° elevation.
#   scripts/bench-nerf.sh [RUNS]            (default 3)
# Needs the peers' environment: ../shared/peers/setup.sh (PEERS_VENV, default ~/.cache/orbitmesh-peers).
set -euo pipefail
runs="${1:-3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
peers="$root/../shared/peers"
venv="${PEERS_VENV:-$HOME/.cache/orbitmesh-peers}"
python="$venv/bin/python"
[ -x "$python" ] || { echo "no peer environment at $venv: run $peers/setup.sh first" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orbitmesh-target}"
# The release build, as users run it.
(cd "$root" && cargo build --quiet --release)
bin="$CARGO_TARGET_DIR/release/orbitmesh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
threads="$(nproc)"
"$bin" render "$root/data/gso-mini/stanford_bunny_npm" --out "$work/orbit" --res 128 \
  --background transparent >/dev/null
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
json() { "$python" -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }

# 30 steps each, so neither tool's first steps (allocations, thread pools) dominate.
# The peer's model: a 2^19 table and a finest resolution of 2048 (orbitmesh fits both to the frame
# size, 2^17 and 512 at 128², unless told).
echo "== fixed-sample throughput: 4096 rays x 64 samples per step, the peer's model, 30 steps, $threads threads, median of $runs"
peer=(); ours=()
for _ in $(seq "$runs"); do
  peer+=("$("$python" "$peers/ngp_torch.py" "$work/orbit" --steps 30 --rays 4096 --samples 64 \
    --threads "$threads" | json samples_per_s)")
  "$bin" nerf "$work/orbit" --out "$work/fixed" --fresh --fixed-samples 64 --fixed-rays 4096 \
    --table-log2 19 --finest-resolution 2048 --steps 30 --mesh-resolution 32 >/dev/null 2>&1 || true
  ours+=("$("$python" -c "import json; print(json.load(open('$work/fixed/nerf.json'))['samples_per_s'])")")
done
p="$(median "${peer[@]}")"; o="$(median "${ours[@]}")"
printf 'peer (PyTorch eager)  %12.0f samples/s\norbitmesh (burn flex) %12.0f samples/s\nratio %.1fx\n' \
  "$p" "$o" "$(echo "$o / $p" | bc -l)"

echo "== time to held-out PSNR 25 dB (frames 3, 10, 17), each tool's defaults"
for steps in 50 100 200 400; do
  line="$("$python" "$peers/ngp_torch.py" "$work/orbit" --steps "$steps" --threads "$threads")"
  psnr="$(json psnr_holdout <<< "$line")"; secs="$(json seconds <<< "$line")"
  printf 'peer      %4d steps  %7.1f s  PSNR %5.2f dB\n' "$steps" "$secs" "$psnr"
  if [ "$(echo "$psnr >= 25" | bc -l)" = 1 ]; then break; fi
done
for seconds in 15 30 60 120 240; do
  "$bin" nerf "$work/orbit" --out "$work/ours" --fresh --holdout 3,10,17 --seconds "$seconds" \
    --mesh-resolution 32 >/dev/null 2>&1
  psnr="$("$python" -c "import json; print(json.load(open('$work/ours/nerf.json'))['holdout_psnr_db'])")"
  printf 'orbitmesh %4d s budget          PSNR %5.2f dB\n' "$seconds" "$psnr"
  if [ "$(echo "$psnr >= 25" | bc -l)" = 1 ]; then break; fi
done
