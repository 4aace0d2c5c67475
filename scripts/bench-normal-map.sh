#!/usr/bin/env bash
# What a baked normal map is worth (issue 31): for each gso-mini object, the fine stage on a lit
# oracle orbit, then its fine mesh decimated to 2,000, 5,000 and 20,000 faces and baked onto
# (`examples/normal_map_psnr.rs`): the Chamfer distance to the fine mesh and the PSNR on 14
# held-out views (7 at the orbit's elevation, 7 from 30°) of the fine mesh, of the low-poly mesh
# with its baked colour alone, and with the normal map, over the whole picture and over the pixels
# both cover (the shading alone); the map should recover at least half of what the decimation
# lost. Renders of one view per elevation are left in WORK/OBJECT/ to look at.
# Then the export time of a fine mesh of about 100,000 faces (the DMTet fine stage on a 86³ grid)
# to 3 LODs with normal maps at 1024², and the Khronos validator on the GLB when
# GLTF_VALIDATOR_DIR is set.
#   scripts/bench-normal-map.sh [PRESET] [WORK]     (defaults: fast, a temporary folder)
set -euo pipefail
preset="${1:-fast}"
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orbitmesh-target}"
(cd "$root" && cargo build --release --quiet --bin orbitmesh --example normal_map_psnr)
bin="$CARGO_TARGET_DIR/release/orbitmesh"
if [ -n "${2:-}" ]; then
  work="$2"
  mkdir -p "$work"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi
"$CARGO_TARGET_DIR/release/examples/normal_map_psnr" "$root/data/gso-mini" "$work" "$preset"

bunny="$work/stanford_bunny_npm/work"
"$bin" refine "$bunny/coarse" "$bunny/orbit" --out "$work/fine100k" --resolution 86 --steps 150 \
  --device cpu > /dev/null 2> "$work/refine.log"
"$bin" export "$work/fine100k/fine.obj" -o "$work/fine100k.obj" --faces 100000 > /dev/null
echo
echo "export of $(grep -c '^f ' "$work/fine100k.obj") faces, $(nproc) cores:"
for faces in 100000 20000; do
  start=$(date +%s.%N)
  "$bin" export "$work/fine100k.obj" -o "$work/lods-$faces.glb" --faces "$faces" --lods 3 \
    --normal-map --texture-size 1024 > /dev/null
  printf '  --faces %6d --lods 3 --normal-map (1024²): %.1f s\n' "$faces" \
    "$(echo "$(date +%s.%N) - $start" | bc)"
  if [ -n "${GLTF_VALIDATOR_DIR:-}" ]; then
    node "$root/scripts/validate-gltf.mjs" "$work/lods-$faces.glb" | sed 's/^/  /'
  fi
done
