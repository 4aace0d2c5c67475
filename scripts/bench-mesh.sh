#!/usr/bin/env bash
# `orbitmesh mesh` end to end from each object's conditioning view, the way a user runs it on one
# photo, evaluated against the scan (issue 6's quality and time criteria):
#   - `orbitmesh render OBJ --azimuths 0`: the conditioning view (576², white, elevation 10°,
#     azimuth 0) of the scan in its normalised frame;
#   - `orbitmesh mesh VIEW -o OUT.obj --frame input --preset P`, timed as wall clock;
#   - `orbitmesh eval OUT.obj OBJ --pred-frame object` (the input frame is the scan's normalised
#     frame, because the view was rendered there).
#   scripts/bench-mesh.sh [PRESET] [DATA] [OUT]     (defaults: default, data/gso-mini, bench-mesh-PRESET)
# Prints one line per object and the mean Chamfer. Extra options for `mesh` go in MESH_ARGS.
set -euo pipefail
preset="${1:-default}"
root="$(cd "$(dirname "$0")/.." && pwd)"
data="${2:-$root/data/gso-mini}"
out="${3:-bench-mesh-$preset}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orbitmesh-target}"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$CARGO_TARGET_DIR/release/orbitmesh"
mkdir -p "$out"
printf '%-24s %9s %9s %9s %9s\n' object chamfer 'F@0.01' IoU seconds
sum=0
count=0
for object in "$data"/*/; do
    name="$(basename "$object")"
    [ -d "$object/meshes" ] || continue
    view="$out/$name-view"
    [ -f "$view/000.png" ] || "$bin" render "$object" --azimuths 0 --out "$view" > /dev/null
    start=$(date +%s.%N)
    "$bin" mesh "$view/000.png" -o "$out/$name.obj" --frame input --preset "$preset" --device cpu \
        ${MESH_ARGS:-} > "$out/$name.log" 2>&1
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    report="$("$bin" eval "$out/$name.obj" "$object" --pred-frame object)"
    chamfer=$(awk '$1 == "chamfer" {print $2}' <<< "$report")
    fscore=$(awk '$1 == "fscore@0.01" {print $2}' <<< "$report")
    iou=$(awk '$1 == "volume_iou" {print $2}' <<< "$report")
    printf '%-24s %9.4f %9.3f %9.3f %9.1f\n' "$name" "$chamfer" "$fscore" "$iou" "$seconds"
    sum=$(echo "$sum + $chamfer" | bc -l)
    count=$((count + 1))
done
[ "$count" -gt 0 ] || { echo "no GSO objects (folders with meshes/) in $data" >&2; exit 1; }
printf 'mean Chamfer over %d objects: %.4f (preset %s)\n' "$count" "$(echo "$sum / $count" | bc -l)" "$preset"
