#!/usr/bin/env bash
# Fuzzes every file reader with N mutated seed files each (default 100000), on stable Rust:
#   scripts/fuzz.sh [N] [SEED]
# CI runs the same tests with a short fixed-seed slice; a failure prints the smallest mutation
# list proptest shrank it to (crates/orbitmesh-fuzz/src/lib.rs says how they apply).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orbitmesh-target}"
export ORBITMESH_FUZZ_CASES="${1:-100000}"
[ -n "${2:-}" ] && export ORBITMESH_FUZZ_SEED="$2"
started=$(date +%s)
# --workspace, not -p: with -p cargo resolves burn's features for this crate alone and rebuilds it.
# Every reader, the work folder's stage.json among them: crates/orbitmesh-fuzz/tests/readers.rs.
cargo test --release --locked --workspace --test readers -- --test-threads 2 2>&1 \
  | grep -v "^ *[0-9]*: \|^ *at "
echo "fuzz: $ORBITMESH_FUZZ_CASES cases per reader in $(( $(date +%s) - started )) s"
