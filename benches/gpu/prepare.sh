#!/usr/bin/env bash
# Builds, on the build machine, what bench_all.sh and scripts/gpu/check_ddp.sh run on the GPU
# machine (which builds nothing): the `directclr` binary, the examples train_step_bench,
# make_jpeg_folder and checkpoint_diff, stripped, and libdirectclr_cuda.so
# (the NCCL backend, scripts/cuda_shim.sh; the binary looks for it beside itself) into .gpu/
# (git-ignored; carry it to the GPU machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
cargo build --release -q -p directclr-cli
cargo build --release -q -p directclr --example train_step_bench --example make_jpeg_folder \
  --example checkpoint_diff
mkdir -p .gpu
for b in target/release/directclr target/release/examples/train_step_bench \
  target/release/examples/make_jpeg_folder target/release/examples/checkpoint_diff; do
  cp "$b" .gpu/ && strip ".gpu/$(basename "$b")"
done
scripts/cuda_shim.sh .gpu >/dev/null
strip --strip-unneeded .gpu/libdirectclr_cuda.so
git rev-parse --short HEAD > .gpu/REVISION
ls -la .gpu
