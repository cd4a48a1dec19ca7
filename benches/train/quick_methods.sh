#!/usr/bin/env bash
# Trains every Table 1 method with the Fashion-MNIST quick preset (configs/fashion-mnist-quick.toml,
# only the [method] table changed: r is 64-d there, so d0 / rank 16 and embeddings of 16) and
# writes the per-epoch online-probe curves into benches/train/quick-methods.md (with --record).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
cargo build --release -q -p directclr-cli
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
declare -A methods=(
  [simclr-mlp]='kind = "simclr_mlp"
hidden_dim = 64
out_dim = 16'
  [simclr-linear]='kind = "simclr_linear"
out_dim = 16'
  [simclr-no-projector]='kind = "simclr_no_projector"'
  [directclr]='kind = "direct_clr"
d0 = 16'
  [fixed-low-rank]='kind = "fixed_low_rank"
rank = 16
seed = 0'
  [trainable-diagonal]='kind = "trainable_diagonal"'
)
table="| method | epoch 1 | epoch 2 | epoch 3 | epoch 4 | final loss | seconds |
|---|---|---|---|---|---|---|"
for name in simclr-mlp simclr-linear simclr-no-projector directclr fixed-low-rank trainable-diagonal; do
  cfg="$work/$name.toml"
  python3 - "$cfg" "${methods[$name]}" <<'PY'
import sys
path, method = sys.argv[1], sys.argv[2]
text = open("configs/fashion-mnist-quick.toml").read()
start = text.index("\n[method]\n") + 1
end = text.index("\n[", start)
text = text[:start] + "[method]\n" + method + "\n" + text[end:]
open(path, "w").write(text)
PY
  start=$(date +%s.%N)
  ./target/release/directclr --threads 2 train --config "$cfg" --out "$work/run-$name" --quiet >/dev/null
  end=$(date +%s.%N)
  row=$(python3 - "$work/run-$name/metrics.jsonl" "$name" "$start" "$end" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
epochs = [l for l in lines if l.get("kind") == "epoch"]
acc = " | ".join(f"{100 * e['probe_acc']:.1f} %" for e in epochs)
print(f"| {sys.argv[2]} | {acc} | {epochs[-1]['loss']:.4f} | {float(sys.argv[4]) - float(sys.argv[3]):.0f} |")
PY
)
  table="$table
$row"
  echo "$row"
done
header="Fashion-MNIST quick preset (ResNet-18 CIFAR stem, width 1/8, r 64-d, 32 px, 3,840 images,
batch 128, 4 epochs, SGD), online-probe accuracy of the training views per epoch (chance 10 %);
$(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, directclr $(git rev-parse --short HEAD)"
if [[ "${1:-}" == "--record" ]]; then
  printf '\n%s\n\n%s\n' "$header" "$table" >> benches/train/quick-methods.md
fi
