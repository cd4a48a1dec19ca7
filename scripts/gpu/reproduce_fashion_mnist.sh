#!/usr/bin/env bash
# Table 1 on full Fashion-MNIST with ResNet-18 on an NVIDIA GPU
# (configs/reproduce-fashion-mnist-gpu.toml): six pretraining runs, probes, kNN, spectra, and
# the report. Resumable: run it again after an interruption and it continues.
#
# Here (build machine):
#   source scripts/env.sh && cargo build --release -p directclr-cli
#   mkdir -p .gpu && cp target/release/directclr .gpu/
#   Fashion-MNIST's eight IDX files (or .gz) in a folder, e.g. .gpu/fashion-mnist
# There:
#   DATA=.gpu/fashion-mnist OUT_DIR=out/fashion-mnist-gpu scripts/gpu/reproduce_fashion_mnist.sh [--epochs N]
# On the lent H200 (PyTorch under /opt/torch/.venv, carry .gpu):
#   TORCH_LIB=$(/opt/torch/.venv/bin/python -c 'import torch, os; print(os.path.dirname(torch.__file__) + "/lib")') \
#   CONFIG=configs/reproduce-fashion-mnist-gpu-collapse.toml DATA=.gpu/fashion-mnist OUT_DIR=$OUT/collapse \
#   timeout 570 scripts/gpu/reproduce_fashion_mnist.sh --epochs 30
# Extra arguments go to `directclr reproduce` (e.g. --epochs 20 for a shorter run).
# CONFIG picks another reproduction, e.g. configs/reproduce-fashion-mnist-gpu-collapse.toml (two
# rows, fast probe) for a device session of minutes; under `timeout` and run again, it resumes.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${BIN:-.gpu/directclr}"
data="${DATA:?set DATA to the folder of the full Fashion-MNIST IDX files}"
config="${CONFIG:-configs/reproduce-fashion-mnist-gpu.toml}"
out="${OUT_DIR:-${OUT:-out}/$(basename "$config" .toml)}"
torch_lib="${TORCH_LIB:-$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')}"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$bin" info
"$bin" reproduce --config "$config" --data "$data" \
    --device cuda --out "$out" "$@"
echo "report: $out/report.md"
