#!/usr/bin/env bash
# Side-by-side benchmark of `orbitmesh eval` against the Python peer (trimesh sampling + SciPy
# cKDTree, ../shared/peers/chamfer_scipy.py) on the same mesh pairs at the same point count.
#
#   scripts/bench-eval.sh [RUNS] [POINTS]          (defaults: 5 runs, 100000 points)
#
# Pairs: the gso-mini bowl and bunny, normalised (bounding box centred, longest side 1), each
# against itself displaced by 0.01 along x, and the two against each other. For each pair and tool
# it takes the median over RUNS of the sample + nearest-neighbour time that each tool reports for
# itself (both exclude mesh loading), prints the agreement of the metrics, and the speed ratio.
#
# The peer needs numpy, scipy, trimesh and pillow (trimesh reads the textured OBJ with it). PEER_PYTHON picks the interpreter; by default the
# environment of ../shared/peers/setup.sh if it exists, else a small venv with just those four
# packages is made under ~/.cache (PyTorch is not needed for this peer).
set -euo pipefail
runs="${1:-5}"
points="${2:-100000}"
root="$(cd "$(dirname "$0")/.." && pwd)"
peers="${PEERS_DIR:-$root/../shared/peers}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orbitmesh-target}"

if [ -z "${PEER_PYTHON:-}" ]; then
  if [ -x "$HOME/.cache/orbitmesh-peers/bin/python" ]; then
    PEER_PYTHON="$HOME/.cache/orbitmesh-peers/bin/python"
  else
    venv="$HOME/.cache/orbitmesh-peers-lite"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -c "import numpy, scipy, trimesh, PIL" 2>/dev/null ||
      "$venv/bin/pip" install -q "numpy<3" "scipy>=1.13" "trimesh==5.2.0" pillow
    PEER_PYTHON="$venv/bin/python"
  fi
fi

(cd "$root" && cargo build --release --quiet)
bin="$CARGO_TARGET_DIR/release/orbitmesh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$PEER_PYTHON" - "$root/data/gso-mini" "$work" <<'PY'
import sys, trimesh
src, out = sys.argv[1], sys.argv[2]
for name, folder in [("bowl", "GSO_bead_bowl"), ("bunny", "stanford_bunny_npm")]:
    m = trimesh.load(f"{src}/{folder}/meshes/model.obj", force="mesh", process=False)
    lo, hi = m.bounds
    m.apply_translation(-(lo + hi) / 2)
    m.apply_scale(1.0 / float((hi - lo).max()))
    m.export(f"{out}/{name}.ply")
    m.apply_translation([0.01, 0, 0])
    m.export(f"{out}/{name}_shifted.ply")
PY

pairs=("bowl_shifted bowl" "bunny_shifted bunny" "bunny bowl" "bowl bunny")
echo "orbitmesh $("$bin" --version | cut -d' ' -f2) vs peer chamfer_scipy.py ($("$PEER_PYTHON" -c 'import scipy, trimesh; print("scipy", scipy.__version__, "trimesh", trimesh.__version__)')), $points points, median of $runs runs, $(nproc) cores"
for pair in "${pairs[@]}"; do
  set -- $pair
  for i in $(seq "$runs"); do
    "$bin" eval "$work/$1.ply" "$work/$2.ply" --points "$points" --seed "$i" --iou-cells 0 \
      --json "$work/ours-$1-$2-$i.json" > /dev/null
    "$PEER_PYTHON" "$peers/chamfer_scipy.py" "$work/$1.ply" "$work/$2.ply" --points "$points" \
      --seed "$i" > "$work/peer-$1-$2-$i.json"
  done
done

"$PEER_PYTHON" - "$work" "$runs" "${pairs[@]}" <<'PY'
import sys, json, statistics
work, runs, pairs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print(f"{'pair':<24}{'chamfer ours':>14}{'peer':>10}{'rel diff':>10}{'max |dF|':>10}"
      f"{'ours s':>9}{'peer s':>9}{'speed-up':>10}")
speedups = []
for pair in pairs:
    a, b = pair.split()
    ours = [json.load(open(f"{work}/ours-{a}-{b}-{i}.json"))["report"] for i in range(1, runs + 1)]
    peer = [json.load(open(f"{work}/peer-{a}-{b}-{i}.json")) for i in range(1, runs + 1)]
    ch_o = statistics.mean(r["metrics"]["chamfer"] for r in ours)
    ch_p = statistics.mean(r["chamfer"] for r in peer)
    df = max(abs(statistics.mean(f["fscore"] for r in ours for f in r["metrics"]["fscores"] if f["tau"] == t)
                 - statistics.mean(r[f"fscore@{t}"] for r in peer)) for t in (0.01, 0.02, 0.05))
    t_o = statistics.median(r["seconds"]["sample"] + r["seconds"]["query"] for r in ours)
    t_p = statistics.median(r["seconds_sample_plus_query"] for r in peer)
    speedups.append(t_p / t_o)
    print(f"{a + ' vs ' + b:<24}{ch_o:>14.6f}{ch_p:>10.6f}{(ch_o - ch_p) / ch_p:>+10.2%}{df:>10.4f}"
          f"{t_o:>9.4f}{t_p:>9.4f}{t_p / t_o:>9.1f}x")
print(f"median speed-up (sample + query): {statistics.median(speedups):.1f}x")
PY
