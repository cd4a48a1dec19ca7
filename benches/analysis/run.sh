#!/usr/bin/env bash
# Side-by-side timing of the spectrum of the paper's figures (L2-normalised rows → covariance
# of Eqn 1 → eigenvalues, descending) for N × D float32 embeddings: numpy f64 and PyTorch f64
# (reference_spectrum.py) against directclr's `embedding_spectrum` (examples/analysis_spectrum.rs),
# on the same seeded data, in one go. Prints a table and, with --record, appends it to
# benches/analysis/RESULTS.md.
#
# Needs a Python with torch 2.11 and numpy: set BENCH_PYTHON (default: the venv made by
#   python3 -m venv ~/.cache/directclr/bench-venv &&
#   ~/.cache/directclr/bench-venv/bin/pip install torch==2.11.0 numpy
# ).
# Other settings (environment): N (50000), D (2048), REPEATS per run (3, best taken), ROUNDS
# (2: the Python and Rust runs alternate, best of all rounds taken, so a burst of load on a
# shared machine does not favour either side), BENCH_DATA (folder for the 400 MB data file
# and numpy's eigenvalues; default ~/.cache/directclr/bench-analysis).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
source scripts/env.sh
python="${BENCH_PYTHON:-$HOME/.cache/directclr/bench-venv/bin/python}"
[[ -x "$python" ]] || { echo "run.sh: no Python at $python (see the header of this script)" >&2; exit 1; }
data="${BENCH_DATA:-$HOME/.cache/directclr/bench-analysis}"
n="${N:-50000}" d="${D:-2048}" repeats="${REPEATS:-3}" rounds="${ROUNDS:-2}"
cargo build --release -q -p directclr --example analysis_spectrum
bin="$root/target/release/examples/analysis_spectrum"
rev="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo "+changes")"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
py_runs=() our_runs=()
for _ in $(seq "$rounds"); do
  py_runs+=("$("$python" benches/analysis/reference_spectrum.py --data "$data" --n "$n" --d "$d" --repeats "$repeats")")
  our_runs+=("$("$bin" "$data" "$n" "$d" "$repeats")")
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# best KEY: the minimum of KEY over the JSON lines on stdin (the last line's value for strings).
best() { "$python" -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
v = [r[sys.argv[1]] for r in rows]
print(min(v) if isinstance(v[0], float) else v[-1])' "$1"; }
py_best() { printf '%s\n' "${py_runs[@]}" | best "$1"; }
our_best() { printf '%s\n' "${our_runs[@]}" | best "$1"; }
# The worst (largest) disagreement over the rounds, with 2 significant digits.
worst() { printf '%s\n' "${@:2}" | "$python" -c '
import json, sys
print("%.1e" % max(json.loads(l)[sys.argv[1]] for l in sys.stdin if l.strip()))' "$1"; }
fmt() { "$python" -c "print(f'{$1:.2f}')"; }

t_np=$(py_best numpy_seconds) t_pt=$(py_best torch_seconds)
t_ours=$(our_best ours_seconds) t_chunked=$(our_best ours_chunked_seconds)
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
table=$(cat <<TABLE
Spectrum of $n × $d float32 embeddings (L2 rows, covariance Eqn 1, eigenvalues) — best of $repeats × $rounds rounds
$(date -u +%Y-%m-%d), $cpu, $(nproc) cores, load average $load_before → $load_after; numpy $(py_best numpy), PyTorch $(py_best torch) ($(py_best torch_threads) threads); directclr $rev, libtorch $(basename "$(dirname "$LIBTORCH")" | sed 's/libtorch-//') ($(our_best threads) threads)

| | numpy f64 | PyTorch f64 | directclr one-shot | directclr in chunks of 4096 |
|---|---|---|---|---|
| seconds | $(fmt "$t_np") | $(fmt "$t_pt") | $(fmt "$t_ours") | $(fmt "$t_chunked") |
| speed-up vs PyTorch | | 1.0x | $("$python" -c "print(f'{$t_pt/$t_ours:.1f}x')") | $("$python" -c "print(f'{$t_pt/$t_chunked:.1f}x')") |
| max relative eigenvalue difference vs numpy (λ > 1e-10 λ₁) | 0 | $(worst torch_max_rel_diff "${py_runs[@]}") | $(worst ours_max_rel_diff "${our_runs[@]}") (both) | |
| max absolute difference / λ₁ (all $d) | 0 | $(worst torch_max_abs_diff_over_top "${py_runs[@]}") | $(worst ours_max_abs_diff_over_top "${our_runs[@]}") (both) | |
TABLE
)
echo "$table"
if [[ "${1:-}" == "--record" ]]; then
  printf '\n%s\n' "$table" >> benches/analysis/RESULTS.md
fi
