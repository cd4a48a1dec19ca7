#!/usr/bin/env bash
# Side-by-side throughput of the data pipeline: the authors' two-view recipe in
# torchvision/PIL (one core) against ours (1 and 2 worker threads), at 32 px (in-memory 32×32
# images) and 224 px (decoding a 400×350 JPEG for every image). Two views per image.
#
# Needs a Python with torch 2.11, torchvision 0.26, pillow and numpy, at $DIRECTCLR_BENCH_PYTHON
# (default ~/.cache/directclr/bench-venv/bin/python). Create it once with:
#   python3 -m venv ~/.cache/directclr/bench-venv
#   ~/.cache/directclr/bench-venv/bin/pip install torch==2.11.0 torchvision==0.26.0 pillow numpy
#
# Usage: benches/data/run.sh [IMAGES]   (default 400 images at 224 px; 8× as many at 32 px)
# Record the printed figures in benches/data/RESULTS.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${DIRECTCLR_BENCH_PYTHON:-$HOME/.cache/directclr/bench-venv/bin/python}"
n="${1:-400}"
if [ ! -x "$python" ]; then
  echo "no Python at $python: see the header of $0 to create the venv" >&2
  exit 1
fi
cd "$root"
# shellcheck source=/dev/null
source scripts/env.sh
cargo build --release -p directclr --example data_pipeline_bench
target="${CARGO_TARGET_DIR:-$root/target}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python" "$here/make_jpeg.py" "$tmp/bench.jpg"

echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$python" -c 'import torch, torchvision, PIL; print(f"# torch {torch.__version__}, torchvision {torchvision.__version__}, pillow {PIL.__version__}")'
echo "# $(rustc --version)"
"$python" "$here/torchvision_ref.py" "$tmp/bench.jpg" "$n"
"$target/release/examples/data_pipeline_bench" "$tmp/bench.jpg" "$n" 1 2
