#!/usr/bin/env bash
# GPU check of data-parallel training (run on a machine with an NVIDIA GPU): a few steps of
# the tiny DirectCLR run on CUDA as 1 process, then as 2 processes, and the two checkpoints
# compared (weights, BN buffers, momentum; 6 LARS steps, SyncBN on, gradient all-reduce
# overlapping the backward pass).
#
# NOT RUN ON A GPU YET: no GPU machine was lent to the session that wrote it. It ran here on
# the CPU only: DEVICE=cpu (part 3) and, with the cu130 venv's libraries and no device, parts 1
# and 2 up to "no CUDA device is visible".
#
# Parts (each prints PASS, FAIL or NOT POSSIBLE; the exit status is that of parts 1 and 3):
#   1. NCCL, 2 ranks via `--nproc 2`, rank r on cuda:(r mod GPUs). With one GPU both ranks
#      share it, which NCCL (since 2.5) refuses ("Duplicate GPU detected"): then this part
#      reports NOT POSSIBLE with that message, and it is a real comparison from 2 GPUs on.
#   2. NCCL, 2 ranks sharing the one GPU through a workaround: each rank gets its own
#      NCCL_HOSTID, so NCCL takes them for two hosts and connects them through its socket
#      transport on the loopback interface. Untried; informative only (never fails the script).
#   3. Gloo with CUDA tensors, 2 ranks sharing the GPU (what ran before NCCL was built in).
# Autocast and channels-last are off (f32), but cuDNN may use TF32 convolutions, whose
# rounding differs between a batch of 16 and two of 8: the tolerance is 1e-3 (on the CPU the
# same comparison holds to 1e-6: crates/directclr-cli/tests/dist.rs).
#
# Here:   benches/gpu/prepare.sh     (directclr, checkpoint_diff and libdirectclr_cuda.so in .gpu/)
# There:  TORCH_LIB=/path/to/site-packages/torch/lib scripts/gpu/check_ddp.sh
#         (default TORCH_LIB: the torch of `python3`; it must be PyTorch 2.11.0 for CUDA 13.0,
#         the build that libdirectclr_cuda.so was compiled for)
# A CPU dry run (Gloo part only; what ran here):
#   DEVICE=cpu TOL=1e-6 BIN_DIR=target/release DIFF_BIN=target/release/examples/checkpoint_diff \
#     scripts/gpu/check_ddp.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
bin_dir="${BIN_DIR:-.gpu}"
device="${DEVICE:-cuda}"
tol="${TOL:-1e-3}"
diff_bin="${DIFF_BIN:-$bin_dir/checkpoint_diff}"
if [[ "$device" == cuda* ]]; then
  torch_lib="${TORCH_LIB:-$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')}"
  export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
  [[ -f "$bin_dir/libdirectclr_cuda.so" ]] \
    || echo "warning: $bin_dir/libdirectclr_cuda.so is missing (benches/gpu/prepare.sh builds it): the NCCL parts will fail"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
config() { # config NAME BACKEND
  cat > "$work/$1.toml" <<TOML
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

[dist]
backend = "$2"
timeout_s = 60
TOML
}
# Every run is bounded (a stuck NCCL initialisation must not eat the device time).
train() { timeout -k 10 240 "$bin_dir/directclr" --threads 1 train --quiet "$@"; }
compare() { # compare NAME RUN: against the 1-process run
  echo "-- checkpoints after 6 steps, 1 process against $1"
  if "$diff_bin" "$work/one" "$2" "$tol"; then echo "PASS: $1"; return 0; fi
  echo "FAIL: $1"; return 1
}
status=0

echo "== 1 process"
config gloo gloo
config nccl nccl
train --config "$work/gloo.toml" --out "$work/one" || { echo "FAIL: the 1-process run"; exit 1; }

if [[ "$device" == cuda* ]]; then
  echo "== part 1: NCCL, 2 processes (--nproc 2; rank r on cuda:(r mod GPUs))"
  if train --nproc 2 --config "$work/nccl.toml" --out "$work/nccl" 2> "$work/nccl.err"; then
    compare "NCCL, 2 processes" "$work/nccl" || status=1
  else
    tail -n 5 "$work/nccl.err"
    if grep -q "Duplicate GPU" "$work/nccl.err"; then
      echo "NOT POSSIBLE: NCCL refuses two ranks on one GPU (as expected with a single GPU)"
    else
      echo "FAIL: NCCL, 2 processes"; status=1
    fi
  fi

  echo "== part 2: NCCL, 2 processes on one GPU as two NCCL hosts (NCCL_HOSTID; informative)"
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  pids=()
  for r in 0 1; do
    RANK=$r WORLD_SIZE=2 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      NCCL_HOSTID="directclr-check-$r" NCCL_SOCKET_IFNAME=lo NCCL_IB_DISABLE=1 \
      train --config "$work/nccl.toml" --out "$work/hostid" 2> "$work/hostid-$r.err" &
    pids+=($!)
  done
  ok=1
  for p in "${pids[@]}"; do wait "$p" || ok=0; done
  if [[ $ok == 1 ]]; then
    compare "NCCL, 2 processes on one GPU as two hosts" "$work/hostid" || true
  else
    tail -n 5 "$work/hostid-0.err" "$work/hostid-1.err"
    echo "NOT POSSIBLE: NCCL with two ranks on one GPU as two hosts (see above)"
  fi
else
  echo "== parts 1 and 2 (NCCL) skipped: DEVICE=$device"
fi

echo "== part 3: Gloo, 2 processes sharing the device (--nproc 2)"
if train --nproc 2 --config "$work/gloo.toml" --out "$work/gloo"; then
  compare "Gloo, 2 processes" "$work/gloo" || status=1
else
  echo "FAIL: Gloo, 2 processes"; status=1
fi
exit $status
