#!/usr/bin/env bash
# The main job on a fresh machine: installs libtorch once (per-user cache), builds the release
# binary and runs the whole theory lab (Sections 4–5, Figures 4–6) at the paper's settings,
# writing figures (PNG) and numbers (CSV, JSON) into out/theory (or the folder given).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release -q -p directclr-cli
exec ./target/release/directclr theory all --out "${1:-out/theory}"
