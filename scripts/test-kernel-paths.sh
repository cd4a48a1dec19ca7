#!/usr/bin/env bash
# Runs the numerics-heavy test binaries again on other CPU kernel paths, standing in for
# another vendor's CPU on this one (docs/testing.md):
#   - ATEN_CPU_CAPABILITY=default: libtorch's kernels without AVX2/AVX-512;
#   - MKL_ENABLE_INSTRUCTIONS=SSE4_2 and =AVX2: libtorch's BLAS/LAPACK is oneMKL, linked into
#     libtorch_cpu; AVX2 is the path it takes on AMD CPUs, SSE4.2 its oldest;
#   - RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1: one thread for the data workers and the kernels.
# Usage: scripts/test-kernel-paths.sh (after the build; scripts/test.sh calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

binaries=(
    analysis_rank analysis_spectrum formats_embeddings
    loss_info_nce method_table1 model_resnet
    optim_lars_sgd optim_fused_step optim_pretrain_step
    theory_closed_forms theory_experiments
    train_guard train_monitor
    eval data_augment data_device_augment
)
args=(--release -p directclr --lib)
for b in "${binaries[@]}"; do
    args+=(--test "$b")
done

settings=(
    "ATEN_CPU_CAPABILITY=default"
    "MKL_ENABLE_INSTRUCTIONS=SSE4_2"
    "MKL_ENABLE_INSTRUCTIONS=AVX2"
    "RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1"
)
for setting in "${settings[@]}"; do
    echo "test-kernel-paths: ${setting}"
    start=$(date +%s)
    # shellcheck disable=SC2086 # the setting is a list of NAME=value words
    env $setting cargo test "${args[@]}" -- --quiet
    echo "test-kernel-paths: ${setting}: green in $(($(date +%s) - start)) s"
done
