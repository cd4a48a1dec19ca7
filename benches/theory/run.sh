#!/usr/bin/env bash
# Side-by-side timing of the Section 5 toy run (case 2, L = 2, 10,000 steps, batch 128) in
# PyTorch (reference_case2.py) and in directclr, both on one CPU thread, in one go. Writes the
# figures to stdout and, with --record, appends them to benches/theory/RESULTS.md.
#
# Needs a Python with torch 2.11 and numpy: set BENCH_PYTHON (default: the venv made by
#   python3 -m venv ~/.cache/directclr/bench-venv &&
#   ~/.cache/directclr/bench-venv/bin/pip install torch==2.11.0 numpy
# ).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
source scripts/env.sh
python="${BENCH_PYTHON:-$HOME/.cache/directclr/bench-venv/bin/python}"
[[ -x "$python" ]] || { echo "run.sh: no Python at $python (see the header of this script)" >&2; exit 1; }
cargo build --release -q -p directclr-cli
bin="$root/target/release/directclr"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
repeats="${REPEATS:-3}"

best() { sort -g | head -n 1; }
py_time() { for _ in $(seq "$repeats"); do "$python" benches/theory/reference_case2.py "$@" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["seconds"])'; done | best; }
# Our training time is read from the run's summary (it excludes process start-up); the
# wall-clock time of the whole command, start-up and file writing included, is reported too.
our_time() {
  for _ in $(seq "$repeats"); do
    local t0 t1
    t0=$(date +%s.%N)
    "$bin" --threads 1 theory implicit --out "$out/run" "$@" >/dev/null
    t1=$(date +%s.%N)
    "$python" -c "import json; s=json.load(open('$out/run/summary.json')); print(s['train_seconds'], $t1-$t0)"
  done | sort -g | head -n 1
}

py_train=$(py_time)
py_measure=$(py_time --measure)
read -r our_train our_train_wall < <(our_time --log-every 10000)
read -r our_measure our_measure_wall < <(our_time)

cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
torch_version=$("$python" -c 'import torch; print(torch.__version__)')
table=$(cat <<TABLE
Case 2 (Section 5), L = 2, 10,000 steps, batch 128, f32, one thread — best of $repeats
$(date -u +%Y-%m-%d), $cpu, $(nproc) cores; PyTorch $torch_version; directclr $(git rev-parse --short HEAD)

| run | PyTorch eager (s) | directclr train (s) | directclr whole command (s) | speed-up (train) |
|---|---|---|---|---|
| training only | $py_train | $our_train | $our_train_wall | $("$python" -c "print(f'{$py_train/$our_train:.1f}x')") |
| with measurements every 10 steps | $py_measure | $our_measure | $our_measure_wall | $("$python" -c "print(f'{$py_measure/$our_measure:.1f}x')") |
TABLE
)
echo "$table"
if [[ "${1:-}" == "--record" ]]; then
  printf '\n%s\n' "$table" >> benches/theory/RESULTS.md
fi
