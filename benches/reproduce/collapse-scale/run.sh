#!/usr/bin/env bash
# Does SimCLR without projector collapse its representation at quick-start scale (10 epochs on
# the shipped 10k-image Fashion-MNIST subset, 2 CPU cores)? Trains each variant in this folder
# (a folder already finished is skipped, an interrupted one resumed), then measures the spectrum
# of r on the first 2,000 test images (L2 rows, covariance in f64, Eqn 1) and prints one table
# row per run: effective rank, collapsed dimensions (λ/λ1 < 1e-6), λ32/λ1 and λmin/λ1.
# The quick start's own two runs are read from out/quick when present.
# Usage: benches/reproduce/collapse-scale/run.sh [OUT] (default out/collapse-scale). Each
# 10-epoch run takes 3-8 minutes on idle cores (the ResNet-50 ones the longest), each of the four
# 100-epoch runs 25-35 minutes alone; all of them about 3 hours on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$root"
out="${1:-out/collapse-scale}"
source scripts/env.sh
cargo build --release -q -p directclr-cli
bin="$root/target/release/directclr"
runs=()
for q in directclr simclr-no-projector; do
  [[ -f "out/quick/runs/$q/encoder.safetensors" ]] && runs+=("out/quick/runs/$q")
done
for cfg in "$here"/*.toml; do
  name="$(basename "$cfg" .toml)"
  dir="$out/runs/$name"
  # A finished folder returns at once ("already complete"); an interrupted one resumes.
  "$bin" --threads 2 train --config "$cfg" --out "$dir" --quiet
  runs+=("$dir")
done
printf '| run | dim | effective rank | collapsed | λ32/λ1 | λmin/λ1 |\n|---|---:|---:|---:|---:|---:|\n'
for dir in "${runs[@]}"; do
  name="$(basename "$dir")"
  "$bin" --threads 2 spectrum --run "$dir" --limit 2000 --out "$out/spectrum/$name" > "$out/spectrum-$name.log" 2>&1
  line="$(head -n 1 "$out/spectrum-$name.log")"
  rank="$(sed -n 's/.*effective rank \([0-9.]*\),.*/\1/p' <<< "$line")"
  collapsed="$(sed -n 's/.*collapsed \([0-9]*\) .*/\1/p' <<< "$line")"
  awk -F, -v name="$name" -v rank="$rank" -v col="$collapsed" '
    NR > 1 { ev[NR - 1] = $2; n = NR - 1 }
    END { printf "| %s | %d | %s | %s | %.2e | %.2e |\n", name, n, rank, col, ev[32] / ev[1], ev[n] / ev[1] }
  ' "$out/spectrum/$name/spectrum.csv"
done
