#!/usr/bin/env bash
# Builds, on the build machine, what bench_all.sh runs on the GPU machine (which builds
# nothing): the `directclr` binary and the examples train_step_bench and make_jpeg_folder,
# stripped (under 1 MB each) into .gpu/ (git-ignored; carry it to the GPU machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
cargo build --release -q -p directclr-cli
cargo build --release -q -p directclr --example train_step_bench --example make_jpeg_folder
mkdir -p .gpu
for b in target/release/directclr target/release/examples/train_step_bench target/release/examples/make_jpeg_folder; do
  cp "$b" .gpu/ && strip ".gpu/$(basename "$b")"
done
git rev-parse --short HEAD > .gpu/REVISION
ls -la .gpu
