#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs libtorch once (per-user cache), builds
# in release and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo test --release --workspace "$@"
