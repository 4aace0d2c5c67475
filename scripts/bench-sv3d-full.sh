#!/usr/bin/env bash
# SV3D at full size on the CPU (issue 27), with a synthetic checkpoint: every tensor of the
# official sv3d_p.safetensors, seeded random weights (no model hub is reachable here).
#   1. makes the checkpoint once, in the cache folder (`--example sv3d_synthetic`, f16, 4.7 GB);
#   2. renders and prepares a gso-mini conditioning view (576², azimuth 0, elevation 10°);
#   3. runs `orbitmesh orbit PREPARED --weights SYNTH --steps 1 --device cpu`, printing each part's
#      time (CLIP, VAE encoder, each UNet call, the decoder per chunk) and the peak RSS;
#   4. runs the reference code's UNet at full size on the same machine
#      (../shared/peers/sv3d_unet_torch.py: PyTorch eager, the official sgm modules, random
#      weights, float32, the same threads) and prints the ratio of one UNet call, median of 2.
#   scripts/bench-sv3d-full.sh [OUT]        (default bench-sv3d-full)
# Environment: THREADS (default: every core), PEERS_VENV (default $HOME/.cache/orbitmesh-peers,
# made by ../shared/peers/setup.sh), OBJECT (default utah_teapot), ORBIT_ARGS (extra options).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-bench-sv3d-full}"
threads="${THREADS:-$(nproc)}"
object="${OBJECT:-utah_teapot}"
venv="${PEERS_VENV:-$HOME/.cache/orbitmesh-peers}"
peer="$root/../shared/peers/sv3d_unet_torch.py"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/orbitmesh/sv3d-synthetic"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orbitmesh-target}"
export RAYON_NUM_THREADS="$threads"

[ -x "$venv/bin/python" ] || { echo "no peers environment at $venv: run ../shared/peers/setup.sh" >&2; exit 1; }
[ -f "$peer" ] || { echo "no reference UNet at $peer" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin orbitmesh --example sv3d_synthetic
bin="$CARGO_TARGET_DIR/release/orbitmesh"
synth="$cache/sv3d_p-f16-seed0.safetensors"
mkdir -p "$cache" "$out"
[ -f "$synth" ] || "$CARGO_TARGET_DIR/release/examples/sv3d_synthetic" "$synth" --dtype f16 --seed 0

view="$out/view"
[ -f "$view/000.png" ] || "$bin" render "$root/data/gso-mini/$object" --azimuths 0 --out "$view" > /dev/null
[ -f "$out/prepared/prepared.png" ] || "$bin" prepare "$view/000.png" --out "$out/prepared" > /dev/null

rm -rf "$out/orbit"
/usr/bin/time -v "$bin" orbit "$out/prepared/prepared.png" --weights "$synth" --steps 1 \
    --device cpu --out "$out/orbit" ${ORBIT_ARGS:-} > "$out/orbit.out" 2> "$out/orbit.log" \
    || { cat "$out/orbit.log" >&2; exit 1; }
echo "orbitmesh orbit, full-size sv3d_p (synthetic f16 weights), 1 step, CPU, $threads threads:"
grep -E '^orbit [0-9]+/[0-9]+:' "$out/orbit.log" | sed 's/^/  /'
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$out/orbit.log")
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/orbit.log")
printf '  wall %s, peak RSS %.2f GiB, %d frames written\n' "$wall" "$(echo "$rss_kb / 1048576" | bc -l)" \
    "$(ls "$out/orbit"/[0-9]*.png | wc -l)"
ours=$(grep -E '^orbit [0-9]+/[0-9]+: UNet step 1/1' "$out/orbit.log" | sed -E 's/.* in ([0-9.]+) s$/\1/' \
    | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')

echo "reference UNet (sv3d_unet_torch.py, PyTorch eager, f32, $threads threads):"
reference_json="$("$venv/bin/python" "$peer" --frames 21 --size 72 --calls 2 --threads "$threads")"
echo "  $reference_json"
reference=$("$venv/bin/python" -c 'import json, sys; print(json.loads(sys.argv[1])["median_s"])' "$reference_json")
printf 'one full-size UNet call, median of 2: orbitmesh %.1f s, reference %.1f s, ratio (reference / orbitmesh) %.2f\n' \
    "$ours" "$reference" "$(echo "$reference / $ours" | bc -l)"
