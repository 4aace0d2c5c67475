#!/usr/bin/env bash
# The checks for a lent GPU machine (issue 27), in one run of at most 8 minutes. There is no Rust
# there, so the binaries are built here and carried:
#   here:  scripts/gpu-check.sh --pack        release binaries, stripped, into .gpu/ (ignored by
#                                            git), and the Vulkan loader's packages into .gl/
#   there: device run, carry [".gpu", ".gl"], command:
#          for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; bash scripts/gpu-check.sh
# It prints: the adapter wgpu sees, its limits and features (f16, subgroups, cooperative matrix);
# the NeRF's training throughput on the GPU against the CPU's on the same machine; one full-size
# UNet call's time and the peak device memory of a 1-step full-size orbit with a synthetic
# checkpoint (made there: seeded random weights in the official layout, f16); and the wall time
# of `orbitmesh mesh --weights SYNTH --steps 2`. Logs go to $OUT (or ./gpu-check-out).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ "${1:-}" = "--pack" ]; then
    set -e
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orbitmesh-target}"
    cargo build --release --quiet --bin orbitmesh --example sv3d_synthetic --example gpu_info
    mkdir -p .gpu
    grep -qx '/.gpu/' .git/info/exclude 2> /dev/null || echo /.gpu/ >> .git/info/exclude
    for b in orbitmesh examples/sv3d_synthetic examples/gpu_info; do
        strip -o ".gpu/$(basename "$b")" "$CARGO_TARGET_DIR/release/$b"
    done
    if ! ls .gl/*.deb > /dev/null 2>&1; then
        grep -qx '/.gl/' .git/info/exclude || echo /.gl/ >> .git/info/exclude
        mkdir -p .gl /tmp/amd64/partial
        o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
        # shellcheck disable=SC2086
        apt-get $o update -qq
        # shellcheck disable=SC2086
        (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
    fi
    du -sh .gpu .gl
    exit 0
fi

out="${OUT:-$root/gpu-check-out}"
mkdir -p "$out"
bin=.gpu/orbitmesh
[ -x "$bin" ] || { echo "no .gpu/orbitmesh: run scripts/gpu-check.sh --pack here first" >&2; exit 1; }
# Where the machine's Vulkan driver is not found by the loader on its own (the device README).
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; fi
work="$(mktemp -d)"
step() { echo; echo "== $* ($(date +%T))"; }
started=$(date +%s)

step "adapter"
timeout 30 .gpu/gpu_info 2>&1 | tee "$out/adapter.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1

step "NeRF training throughput: bunny orbit 128², 4096 rays × 64 samples per step"
"$bin" render data/gso-mini/stanford_bunny_npm --out "$work/bunny" --res 128 --background transparent --device cpu > /dev/null
for device in gpu cpu; do
    steps=$([ "$device" = gpu ] && echo 300 || echo 30)
    timeout 120 "$bin" nerf "$work/bunny" --out "$work/nerf-$device" --fresh --device "$device" \
        --fixed-samples 64 --fixed-rays 4096 --steps "$steps" --mesh-resolution 32 > "$out/nerf-$device.log" 2>&1
    python3 -c "import json; print('$device', json.load(open('$work/nerf-$device/nerf.json'))['samples_per_s'], 'samples/s')" \
        2>&1 | tee -a "$out/nerf.txt"
done
python3 - "$out/nerf.txt" << 'EOF'
import sys
rates = {line.split()[0]: float(line.split()[1]) for line in open(sys.argv[1]) if line.split()[1:2] and line.split()[1].replace('.', '', 1).isdigit()}
if {"gpu", "cpu"} <= rates.keys():
    print(f"GPU / CPU throughput: {rates['gpu'] / rates['cpu']:.1f}x")
EOF

step "synthetic full-size sv3d_p checkpoint (f16, seed 0)"
synth="$work/sv3d_p-synthetic.safetensors"
timeout 120 .gpu/sv3d_synthetic "$synth" --dtype f16 --seed 0 2>&1 | tail -1

step "one full-size orbit, 1 step, on the GPU (f16): each part's time, peak device memory"
"$bin" render data/gso-mini/utah_teapot --azimuths 0 --out "$work/view" --device cpu > /dev/null
"$bin" prepare "$work/view/000.png" --out "$work/prepared" --segmenter classical > /dev/null
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 > "$out/memory.csv" 2> /dev/null &
sampler=$!
sleep 1
baseline=$(head -1 "$out/memory.csv" 2> /dev/null || echo 0)
/usr/bin/time -v timeout 240 "$bin" orbit "$work/prepared/prepared.png" --weights "$synth" --steps 1 \
    --device gpu --out "$work/orbit" > /dev/null 2> "$out/orbit.log"
echo "exit $?"
kill "$sampler" 2> /dev/null
grep -E '^orbit [0-9]+/|^error|panicked' "$out/orbit.log"
grep -E 'Elapsed \(wall|Maximum resident' "$out/orbit.log"
peak=$(sort -n "$out/memory.csv" | tail -1)
echo "peak device memory: $((peak - baseline)) MiB above the idle $baseline MiB"

elapsed=$(( $(date +%s) - started ))
left=$(( 470 - elapsed ))
step "orbitmesh mesh --weights SYNTH --steps 2 on the GPU (limit ${left} s)"
if [ "$left" -gt 30 ]; then
    start=$(date +%s.%N)
    timeout "$left" "$bin" mesh "$work/view/000.png" -o "$work/mesh.glb" --weights "$synth" --steps 2 \
        --device gpu --segmenter classical > "$out/mesh.log" 2>&1
    code=$?
    printf 'exit %d, wall %.1f s\n' "$code" "$(echo "$(date +%s.%N) - $start" | bc)"
    tail -5 "$out/mesh.log"
else
    echo "skipped: no time left"
fi
rm -rf "$work"
