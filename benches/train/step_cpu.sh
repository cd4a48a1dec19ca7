#!/usr/bin/env bash
# The CPU pretraining step side by side: directclr (examples/train_step_bench.rs) and PyTorch
# (step_reference.py), same model, batch, loss and optimiser, alternating, best of REPEATS.
# With --record, appends the table to benches/train/step-cpu.md. BENCH_PYTHON: a Python with
# torch 2.11 and torchvision 0.26 (python3 -m venv DIR && DIR/bin/pip install torch==2.11.0 torchvision==0.26.0).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
python="${BENCH_PYTHON:-$HOME/.cache/directclr/bench-venv/bin/python}"
cargo build --release -q --example train_step_bench
batch="${BATCH:-128}"; steps="${STEPS:-5}"; repeats="${REPEATS:-2}"
threads="${THREADS:-$(nproc)}"
ours=(); theirs=(); loads=("$(cut -d' ' -f1 /proc/loadavg)")
for _ in $(seq "$repeats"); do
  ours+=("$(./target/release/examples/train_step_bench --batch "$batch" --steps "$steps" --threads "$threads")")
  theirs+=("$("$python" benches/train/step_reference.py --batch "$batch" --steps "$steps" --threads "$threads")")
  loads+=("$(cut -d' ' -f1 /proc/loadavg)")
done
rates() { "$python" -c 'import json,sys; print(" ".join("%.1f" % json.loads(l)["view_images_per_s"] for l in sys.stdin if l.strip()))'; }
all_ours="$(printf '%s\n' "${ours[@]}" | rates)"; all_theirs="$(printf '%s\n' "${theirs[@]}" | rates)"
best() { "$python" -c 'import json,sys; rs=[json.loads(l) for l in sys.stdin if l.strip()]; b=max(rs,key=lambda r:r["view_images_per_s"]); print("%.1f %.6f" % (b["view_images_per_s"], b["first_losses"][0]))'; }
read -r our_rate our_loss < <(printf '%s\n' "${ours[@]}" | best)
read -r py_rate py_loss < <(printf '%s\n' "${theirs[@]}" | best)
table="ResNet-18 (CIFAR stem) + SimCLR MLP + InfoNCE + LARS, one CPU training step, batch $batch × 2 views 32 px, $threads threads, best of $repeats alternating runs
$(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); PyTorch $("$python" -c 'import torch; print(torch.__version__)'); directclr $(git rev-parse --short HEAD)

| | view-images/s | first loss (same seed, not the same weights) |
|---|---|---|
| PyTorch 2.11 eager | $py_rate | $py_loss |
| directclr | $our_rate | $our_loss |
| ratio | $("$python" -c "print(f'{$our_rate/$py_rate:.2f}x')") | |

every run (view-images/s, in order): PyTorch $all_theirs; directclr $all_ours
1-minute load average before and after each pair: ${loads[*]}"
echo "$table"
if [[ "${1:-}" == "--record" ]]; then printf '\n%s\n' "$table" >> benches/train/step-cpu.md; fi
