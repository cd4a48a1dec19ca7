#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs libtorch once (per-user cache), builds
# in release and runs every test of the workspace; then, unless arguments narrow the run or
# DIRECTCLR_SKIP_KERNEL_PATHS=1, the numerics-heavy binaries again on other CPU kernel paths
# (scripts/test-kernel-paths.sh, docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo test --release --workspace "$@"
if [[ $# -eq 0 && "${DIRECTCLR_SKIP_KERNEL_PATHS:-0}" != 1 ]]; then
    scripts/test-kernel-paths.sh
fi
