#!/usr/bin/env bash
# The main job on a fresh machine (the quick start): installs libtorch once (per-user cache),
# builds the release binary, then pretrains DirectCLR and SimCLR without projector on the
# Fashion-MNIST subset shipped in data/, probes them, measures the spectra of r and z and writes
# the report (configs/reproduce-quick.toml) into out/quick (or the folder given). Rerunning it
# reuses the finished runs. The theory lab: ./target/release/directclr theory all.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release -q -p directclr-cli
exec ./target/release/directclr --threads "${THREADS:-0}" reproduce \
    --config configs/reproduce-quick.toml --out "${1:-out/quick}"
