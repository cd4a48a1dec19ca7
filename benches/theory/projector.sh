#!/usr/bin/env bash
# Side-by-side timing of `directclr theory projector` configurations (Section 6: linear head on
# the toy encoder, under each collapse mechanism) and the same case in PyTorch
# (projector_torch.py), both on one CPU thread, in one go; then a check that the two compute the
# same thing. Writes benches/theory/projector-results.md and projector-runs.jsonl (pass
# --no-record to print only).
#
# Timing: each configuration is run REPEATS times (3) with seed 0 and the minimum is kept (the
# machine may be shared; the load average before and after is recorded), with the CLI's
# measurements every 10 steps and with training only (--log-every 10000: measured at the start
# and the end). directclr's time is the
# run's own `train_seconds` (data, initialisation, training and measurements every 10 steps, as
# the PyTorch clock); the whole command's wall time (process start-up, figures and CSV files
# included) is given too.
#
# Agreement: the two use different random generators, so one seed's trajectory differs between
# them. Both are run with seeds 0..SEEDS−1 (4) and the means of the final loss and of r's final
# effective rank are compared: under "same distribution" their difference has standard deviation
# s·√(2/n) (s the pooled per-seed standard deviation, n the seeds), and a difference beyond 4 of
# those (a false alarm for fewer than 1 in 100 pairs of agreeing implementations with n = 4,
# Student's t with 6 degrees of freedom) fails the check.
#
# Needs a Python with torch and numpy: set BENCH_PYTHON (default: the venv of run.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
source scripts/env.sh >/dev/null
python="${BENCH_PYTHON:-$HOME/.cache/directclr/bench-venv/bin/python}"
[[ -x "$python" ]] || { echo "projector.sh: no Python at $python (see run.sh)" >&2; exit 1; }
cargo build --release -q -p directclr-cli
bin="$root/target/release/directclr"
# The version the binary was built from (read now: the sources may change while this runs).
version="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' + local changes')"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
repeats="${REPEATS:-3}"
seeds="${SEEDS:-4}"
mechanisms=(implicit-regularization strong-augmentation)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# One JSON line per run into $out/runs.jsonl: impl, mechanism, seed, seconds, wall, final loss,
# effective rank of r at the end.
ours() { # mechanism seed log_every
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" --threads 1 theory projector --mechanisms "$1" --heads linear --seed "$2" \
    --log-every "$3" --out "$out/run" >/dev/null
  t1=$(date +%s.%N)
  "$python" - "$out/run/summary.json" "$t0" "$t1" "$2" "$3" <<'PY' >>"$out/runs.jsonl"
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]
print(json.dumps({"impl": "directclr", "mechanism": r["mechanism"], "seed": int(sys.argv[4]),
                  "log_every": int(sys.argv[5]),
                  "seconds": r["train_seconds"], "wall": float(sys.argv[3]) - float(sys.argv[2]),
                  "final_loss": r["final_loss"], "r_effective_rank_end": r["r_effective_rank"][1]}))
PY
}
theirs() { # mechanism seed log_every
  "$python" benches/theory/projector_torch.py --mechanism "$1" --head linear --seed "$2" \
    --log-every "$3" |
    "$python" -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"impl": "pytorch",
      "mechanism": d["mechanism"], "seed": d["seed"], "log_every": d["log_every"], "seconds": d["seconds"],
      "final_loss": d["final_loss"], "r_effective_rank_end": d["r_effective_rank"][1]}))' \
    >>"$out/runs.jsonl"
}

for m in "${mechanisms[@]}"; do
  for _ in $(seq "$repeats"); do
    ours "$m" 0 10; theirs "$m" 0 10; ours "$m" 0 10000; theirs "$m" 0 10000
  done
  for s in $(seq 1 $((seeds - 1))); do ours "$m" "$s" 10; theirs "$m" "$s" 10; done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
flags=$(grep -m1 -o 'avx512f' /proc/cpuinfo || echo "no AVX-512")
torch_version=$("$python" -c 'import torch; print(torch.__version__)')
table=$("$python" benches/theory/projector_report.py "$out/runs.jsonl" "$repeats" "$seeds" \
  "$(date -u +%Y-%m-%d), $cpu ($flags), $(nproc) cores; load average (1, 5, 15 min) $load_before before, $load_after after; PyTorch $torch_version eager; directclr $version")
echo "$table"
if [[ "${1:-}" != "--no-record" ]]; then
  {
    cat <<'HEAD'
# `directclr theory projector` against PyTorch

Written by `benches/theory/projector.sh` (it replaces this file). The PyTorch script
`projector_torch.py` runs the same case as `directclr --threads 1 theory projector --mechanisms M
--heads linear`: same data size, depth, initialisation, noise, loss, learning rate, steps, batch,
precision (f32) and measurements (every 10 steps, or only at the start and the end with
`--log-every 10000`). "directclr train" is the run's own clock (`train_seconds` in
its summary.json: data, initialisation, training and measurements); "whole command" is the wall
time of the command, loading libtorch at start-up and writing figures and CSV files included.
The PyTorch clock starts after `import torch` and covers the same work as "train".
HEAD
    printf '\n%s\n\nEvery run (one JSON line each): `projector-runs.jsonl`.\n' "$table"
  } >benches/theory/projector-results.md
  cp "$out/runs.jsonl" benches/theory/projector-runs.jsonl
fi
grep -q "^all agree" <<<"$table"
