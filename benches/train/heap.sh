#!/usr/bin/env bash
# The heap policy (`--heap reuse`, the default, against `--heap system`, glibc's defaults; see
# `runtime::HeapPolicy`), alternating in one run:
#   conv   the collapse ladder's one-convolution rung (64 channels at 32 px: 64 MiB activations),
#          `directclr train` on the first 4,000 shipped images, 2 epochs; the encoders trained
#          under the two policies are compared byte for byte
#   step   the CPU pretraining step of step_cpu.sh (ResNet-18 at full width, batch 128 × 2 views):
#          directclr's (examples/train_step_bench.rs) and PyTorch's (step_reference.py); PyTorch's
#          "reuse" is the same glibc setting through GLIBC_TUNABLES (mmap_max 0, trim threshold 2 GiB)
# Prints a markdown table; --record appends it to benches/train/heap.md. THREADS (default 1),
# REPEATS (default 2); BENCH_PYTHON as in step_cpu.sh (without torch the PyTorch row is empty).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh >/dev/null
cargo build --release -q -p directclr-cli && cargo build --release -q -p directclr --example train_step_bench
threads="${THREADS:-1}"; repeats="${REPEATS:-2}"
python="${BENCH_PYTHON:-$HOME/.cache/directclr/bench-venv/bin/python}"
tunables="glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
{ cat benches/reproduce/collapse-ladder/base.toml; printf '\n[model]\narch = "conv"\ndim = 64\n\n[method]\nkind = "simclr_no_projector"\n'; } > "$work/conv.toml"
rate() { python3 -c 'import json,sys; print("%.1f" % json.loads(sys.stdin.read())["view_images_per_s"])'; }
declare -A conv step torch
for r in $(seq "$repeats"); do
  for heap in system reuse; do
    start=$(date +%s.%N)
    ./target/release/directclr --heap "$heap" --threads "$threads" train --config "$work/conv.toml" \
      --out "$work/conv-$heap-$r" --epochs 2 --limit 4000 --quiet > /dev/null 2>&1
    conv[$heap]+="$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") "
    step[$heap]+="$(./target/release/examples/train_step_bench --heap "$heap" --threads "$threads" | rate) "
    if [[ -x "$python" ]]; then
      if [[ "$heap" == reuse ]]; then env=(GLIBC_TUNABLES="$tunables"); else env=(); fi
      torch[$heap]+="$(env "${env[@]}" "$python" benches/train/step_reference.py --threads "$threads" | rate) "
    fi
  done
done
same=different; cmp -s "$work/conv-system-1/encoder.safetensors" "$work/conv-reuse-1/encoder.safetensors" && same=identical
torch_version="$([[ -x "$python" ]] && "$python" -c 'import torch; print(torch.__version__)' || echo absent)"
table="Heap policy, glibc's defaults (system) against reuse, $threads thread(s), $repeats alternating runs each
$(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(ldd --version | head -1 | grep -o '[0-9.]*$' | sed 's/^/glibc /'); directclr $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' + uncommitted changes')

| | system | reuse |
|---|---|---|
| conv rung, \`directclr train\`, 4,000 images × 2 epochs (seconds, lower is better) | ${conv[system]}| ${conv[reuse]}|
| ResNet-18 step, directclr (view-images/s) | ${step[system]}| ${step[reuse]}|
| ResNet-18 step, PyTorch $torch_version (view-images/s) | ${torch[system]:-}| ${torch[reuse]:-}|

conv encoders trained under the two policies: $same bytes"
echo "$table"
if [[ "${1:-}" == "--record" ]]; then printf '\n%s\n' "$table" >> benches/train/heap.md; fi
