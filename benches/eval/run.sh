#!/usr/bin/env bash
# Figure 9's job end to end, side by side: the representation r of every image of a folder of
# JPEGs (500×375, flat) under the evaluation transform (Resize 256, CenterCrop 224, ImageNet
# Normalize), ResNet-18 and ResNet-50 in eval mode, with
#   directclr: `directclr spectrum --encoder W.pt --arch A --data DIR --save-embeddings r.npy`
#   PyTorch:   torch_features.py (PIL + torchvision transforms, DataLoader workers)
# on the same images and the same torch.save weights, in one go; then compare.py checks that
# both computed the same r (JPEG decoders differ: libjpeg-turbo vs zune-jpeg, docs/eval-transform.md).
# Prints a table and, with --record, appends it to benches/eval/RESULTS.md.
#
# Needs a Python with torch 2.11, torchvision 0.26, pillow and numpy: set BENCH_PYTHON (default:
# the venv made by
#   python3 -m venv ~/.cache/directclr/bench-venv &&
#   ~/.cache/directclr/bench-venv/bin/pip install torch==2.11.0 torchvision==0.26.0 pillow numpy
# ).
# Settings (environment): N images (256), BATCH (64), WORKERS loader processes/threads (2),
# THREADS intra-op threads of both (2), ROUNDS (2: the two sides alternate, best taken),
# ARCHS ("resnet18 resnet50"), BENCH_DATA (~/.cache/directclr/bench-eval).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
source scripts/env.sh >/dev/null
python="${BENCH_PYTHON:-$HOME/.cache/directclr/bench-venv/bin/python}"
[[ -x "$python" ]] || { echo "run.sh: no Python at $python (see the header of this script)" >&2; exit 1; }
n="${N:-256}" batch="${BATCH:-64}" workers="${WORKERS:-2}" threads="${THREADS:-2}"
rounds="${ROUNDS:-2}" archs="${ARCHS:-resnet18 resnet50}"
data="${BENCH_DATA:-$HOME/.cache/directclr/bench-eval}/n$n"
cargo build --release -q -p directclr-cli
bin="$root/target/release/directclr"
rev="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo "+changes")"
"$python" benches/eval/make_folder.py "$data" "$n"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

best() { sort -g | head -n 1; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
table="| model | images | directclr images/s | PyTorch images/s | ratio | max Δr / max r | median cos | eff. rank ours / torch |
|---|---|---|---|---|---|---|---|"
for arch in $archs; do
    ours=() theirs=()
    for _ in $(seq "$rounds"); do
        line=$("$bin" --threads "$threads" spectrum --encoder "$data/$arch.pt" --arch "$arch" \
            --data "$data/images" --batch-size "$batch" --workers "$workers" \
            --save-embeddings "$out/ours.npy" --out "$out/spectrum" | grep "images/s")
        ours+=("$(sed -E 's/.*\(([0-9.]+) images\/s\).*/\1/' <<<"$line")")
        json=$("$python" benches/eval/torch_features.py "$arch" "$data/$arch.pt" "$data/images" \
            "$batch" "$workers" "$threads" "$out/torch.npy")
        theirs+=("$("$python" -c 'import json,sys; print(json.load(sys.stdin)["images_per_s"])' <<<"$json")")
    done
    o=$(printf '%s\n' "${ours[@]}" | sort -gr | head -n 1)
    t=$(printf '%s\n' "${theirs[@]}" | sort -gr | head -n 1)
    cmp=$("$python" benches/eval/compare.py "$out/ours.npy" "$out/torch.npy")
    row=$("$python" - "$arch" "$n" "$o" "$t" "$cmp" <<'PY'
import json, sys
arch, n, o, t, cmp = sys.argv[1:6]
c = json.loads(cmp)
o, t = float(o), float(t)
print(f"| {arch} | {n} | {o:.1f} | {t:.1f} | {o / t:.2f}× | {c['max_abs_diff_rel']:.2e} | "
      f"{c['median_cosine']:.6f} | {c['erank_ours']:.2f} / {c['erank_torch']:.2f} |")
PY
)
    table+=$'\n'"$row"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
report="## $(date -u +%Y-%m-%d) — $rev, $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))

N=$n JPEGs 500×375, batch $batch, $workers workers, $threads threads, best of $rounds rounds each;
torch $("$python" -c 'import torch, torchvision; print(torch.__version__, "torchvision", torchvision.__version__)');
load average before $load_before, after $load_after.

$table
"
echo "$report"
if [[ "${1:-}" == --record ]]; then
    echo "$report" >> benches/eval/RESULTS.md
fi
