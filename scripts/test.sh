#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs libtorch once (per-user cache), builds
# in release and runs every test of the workspace; then, unless arguments narrow the run or
# DIRECTCLR_SKIP_KERNEL_PATHS=1, the numerics-heavy binaries again on other CPU kernel paths
# (scripts/test-kernel-paths.sh, docs/testing.md), and the library once more without its feature
# `dist` (unless DIRECTCLR_SKIP_NO_DIST=1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo test --release --workspace "$@"
if [[ $# -eq 0 && "${DIRECTCLR_SKIP_KERNEL_PATHS:-0}" != 1 ]]; then
    scripts/test-kernel-paths.sh
fi
if [[ $# -eq 0 && "${DIRECTCLR_SKIP_NO_DIST:-0}" != 1 ]]; then
    # The library without its default feature `dist` (c10d's Gloo group): built and tested
    # with no Gloo headers in sight, as for a user who only wants spectra or the theory lab.
    env -u DIRECTCLR_GLOO_INCLUDE cargo test --release -p directclr --no-default-features
fi
