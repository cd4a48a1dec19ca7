#!/usr/bin/env bash
# GPU check (run on a machine with an NVIDIA GPU and PyTorch 2.11 installed): a few steps of
# ResNet-50 with the SimCLR projector in bf16 autocast + channels-last on CUDA against f32 on
# the CPU, from the same weights (crates/directclr/examples/mixed_precision_check.rs).
#
# Here:   cargo build --release --example mixed_precision_check
#         mkdir -p .gpu && cp target/release/examples/mixed_precision_check .gpu/
# There:  TORCH_LIB=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib scripts/gpu/check_mixed_precision.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${BIN:-.gpu/mixed_precision_check}"
torch_lib="${TORCH_LIB:-$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')}"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
"$bin" --device cuda --steps 5 --batch 32 --size 224
