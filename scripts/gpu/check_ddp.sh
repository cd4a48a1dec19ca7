#!/usr/bin/env bash
# GPU check of data-parallel training (run on a machine with an NVIDIA GPU): a few steps of
# the tiny DirectCLR run on CUDA as 1 process, then as 2 processes sharing the one GPU
# (`--nproc 2`, both on cuda:0, SyncBN on), and compares the two checkpoints.
#
# NOT RUN ON A GPU YET. The backend is c10d's Gloo with CUDA tensors: the NCCL process group
# (ProcessGroupNCCL, in libtorch_cuda.so) is not built into directclr yet (README, "Data-parallel
# training"). Autocast and channels-last are off (f32), but cuDNN may use TF32 convolutions,
# whose rounding differs between a batch of 16 and two of 8: the tolerance is 1e-3 (on the CPU
# the same comparison holds to 1e-6: crates/directclr-cli/tests/dist.rs).
#
# Here:   cargo build --release -p directclr-cli && cargo build --release --example checkpoint_diff
#         mkdir -p .gpu && cp target/release/directclr target/release/examples/checkpoint_diff .gpu/
# There:  TORCH_LIB=/path/to/site-packages/torch/lib scripts/gpu/check_ddp.sh
# A CPU dry run of the same script (what ran here):
#   DEVICE=cpu TOL=1e-6 BIN_DIR=target/release DIFF_BIN=target/release/examples/checkpoint_diff \
#     scripts/gpu/check_ddp.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bin_dir="${BIN_DIR:-.gpu}"
device="${DEVICE:-cuda}"
tol="${TOL:-1e-3}"
diff_bin="${DIFF_BIN:-$bin_dir/checkpoint_diff}"
if [[ "$device" == cuda* ]]; then
  torch_lib="${TORCH_LIB:-$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')}"
  export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/tiny.toml" <<TOML
seed = 7
epochs = 2
batch_size = 16
workers = 1
probe = true
device = "$device"

[data]
source = { kind = "fashion_mnist", path = "$PWD/data/fashion-mnist-subset" }
image_size = 32
limit = 48

[model]
arch = "resnet18"
stem = "cifar"
width_multiplier = 0.0625

[method]
kind = "direct_clr"
d0 = 8

[optimizer]
kind = "lars"

[schedule]
lr = 0.05
warmup_epochs = 1.0

[precision]
autocast = "off"
channels_last = false

[log]
every_steps = 1
TOML
echo "== 1 process"
"$bin_dir/directclr" --threads 1 train --quiet --config "$work/tiny.toml" --out "$work/one"
echo "== 2 processes (Gloo, SyncBN)"
"$bin_dir/directclr" --threads 1 train --quiet --nproc 2 --config "$work/tiny.toml" --out "$work/two"
echo "== checkpoints (weights, BN buffers, momentum) after 6 steps"
"$diff_bin" "$work/one" "$work/two" "$tol"
