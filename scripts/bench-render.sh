#!/usr/bin/env bash
# Times `orbitmesh render` on the textured GSO bowl (14k faces): 21 frames of 576², 4× SSAA.
#   scripts/bench-render.sh [RUNS]          (default 5)
# Prints the median over RUNS of the time the command reports for its frame loop (rasterize,
# shade, encode and write the 21 PNGs; loading the mesh and texture excluded), and of the whole
# command's wall time, for the CPU path and for the wgpu path on whatever Vulkan adapter there is
# (llvmpipe without a GPU).
set -euo pipefail
runs="${1:-5}"
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orbitmesh-target}"
(cd "$root" && cargo build --release --quiet)
bin="$CARGO_TARGET_DIR/release/orbitmesh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "orbitmesh render, GSO bead bowl, 21 frames of 576², median of $runs runs, $(nproc) cores"
for device in cpu gpu; do
  render=(); wall=()
  for _ in $(seq "$runs"); do
    start=$(date +%s.%N)
    line=$("$bin" render "$root/data/gso-mini/GSO_bead_bowl" --out "$work/$device" --device "$device" 2>/dev/null)
    end=$(date +%s.%N)
    render+=("$(sed -E 's/.*: ([0-9.]+) s to rasterize.*/\1/' <<< "$line")")
    wall+=("$(echo "$end - $start" | bc)")
    via="$(sed -E 's/.* via (.*): [0-9.]+ s to rasterize.*/\1/' <<< "$line")"
  done
  median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  printf '%-4s %-60s frame loop %6.3f s   wall %6.3f s\n' "$device" "$via" "$(median "${render[@]}")" "$(median "${wall[@]}")"
done
