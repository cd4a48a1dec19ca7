#!/usr/bin/env bash
# Every GPU figure of issue 7 in one run, on a machine with PyTorch 2.11 (CUDA) and the
# binaries of prepare.sh in .gpu/; builds nothing, needs no network. Writes to $OUT:
#   results.jsonl  one JSON line per measurement (written as it goes: a run cut short keeps
#                  what finished), results.md (summarise.py), stderr.log, env.txt, and the
#                  metrics.jsonl of the training runs.
# Order: the step of ours vs PyTorch eager vs torch.compile (ResNet-18 32 px 512×2, ResNet-50
# 224 px 256×2, same initial weights); the end-to-end JPEG image-folder run (CPU and device
# augmentation) vs synthetic input; bf16 vs f32 loss curves; then each speed lever alone.
#
#   GPU:  OUT=/path PY=/opt/torch/.venv/bin/python benches/gpu/bench_all.sh
#   CPU smoke test of the whole script (tiny sizes, minutes): SMOKE=1 DEVICE=cpu benches/gpu/bench_all.sh
# Knobs (1 = run, 0 = skip): STEP (the step vs PyTorch), E2E (end-to-end data run), CURVES
# (bf16 vs f32), LEVERS (each lever alone); COMPILE_CAP (s, default 120, 0 skips torch.compile).
# Where one command may run at most 10 minutes, split it in two:
#   LEVERS=0 benches/gpu/bench_all.sh            (about 7-9 minutes)
#   STEP=0 E2E=0 CURVES=0 benches/gpu/bench_all.sh   (about 2-3 minutes; another OUT)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-out/gpu}"; BIN="${BIN:-.gpu}"; PY="${PY:-python3}"
DEVICE="${DEVICE:-cuda}"; SMOKE="${SMOKE:-0}"; COMPILE_CAP="${COMPILE_CAP:-120}"
STEP="${STEP:-1}"; LEVERS="${LEVERS:-1}"; E2E="${E2E:-1}"; CURVES="${CURVES:-1}"
mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"
res="$OUT/results.jsonl"; : > "$res"; : > "$OUT/stderr.log"
work="${WORK:-$(mktemp -d)}"
torch_lib="$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
threads="$(nproc)"
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  echo "revision $(cat "$BIN/REVISION" 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
  "$BIN/directclr" info 2>&1 | head -3
  echo "cpu threads $threads; device $DEVICE; smoke $SMOKE"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# record NAME TIMEOUT CMD...: runs CMD, keeps its last stdout line if it is JSON.
record() {
  local name="$1" tmo="$2"; shift 2
  echo "== $name ($(date -u +%H:%M:%S))" | tee -a "$OUT/stderr.log"
  local line
  line="$(timeout "$tmo" "$@" 2>>"$OUT/stderr.log" | tail -n 1)"
  local rc=$?
  if [[ -n "$line" ]] && "$PY" -c 'import json, sys; json.loads(sys.argv[1])' "$line" 2>/dev/null; then
    echo "{\"name\": \"$name\", \"result\": $line}" >> "$res"; echo "   $line"
  else
    echo "{\"name\": \"$name\", \"error\": \"exit $rc or timeout ${tmo}s; see stderr.log\"}" >> "$res"; echo "   failed (exit $rc)"
  fi
}

if [[ "$SMOKE" == 1 ]]; then
  r18=(--arch resnet18 --size 32 --batch 4 --steps 1 --warmup 1)
  r50=(--arch resnet50 --size 64 --batch 2 --steps 1 --warmup 1)
  jpegs=(64 60 45 4); e2e_batch=16; e2e_epochs=2; e2e_source=40; e2e_size=32; e2e_arch=resnet18; e2e_stem=cifar
  curve_limit=256; curve_epochs=2; curve_width=0.125
else
  r18=(--arch resnet18 --size 32 --batch 512 --steps 30 --warmup 5)
  r50=(--arch resnet50 --size 224 --batch 256 --steps 15 --warmup 3)
  jpegs=(2560 500 375 10); e2e_batch=256; e2e_epochs=3; e2e_source=256; e2e_size=224; e2e_arch=resnet50; e2e_stem=imagenet
  curve_limit=10000; curve_epochs=4; curve_width=1.0
fi
ours="$BIN/train_step_bench"
ref=(env OMP_NUM_THREADS="$threads" "$PY" benches/gpu/step_reference.py --device "$DEVICE" --threads "$threads")
all=(--bf16 --channels-last --fused); bf16=(--bf16)
if [[ "$DEVICE" == cpu ]]; then all=(--channels-last --fused); bf16=(); fi  # CPU bf16 is emulated: slow, not what is measured

# 1. The step: ours (every lever on) vs PyTorch eager vs torch.compile, same initial weights.
for m in r18 r50; do
  [[ "$STEP" == 1 ]] || break
  declare -n args="$m"
  record "$m/ours" 300 "$ours" --device "$DEVICE" "${args[@]}" "${all[@]}" --save-init "$work/init_$m.safetensors"
  record "$m/pytorch-eager" 300 "${ref[@]}" "${args[@]}" "${bf16[@]}" --channels-last --init "$work/init_$m.safetensors"
  record "$m/ours-f32" 300 "$ours" --device "$DEVICE" "${args[@]}" --channels-last --fused
  record "$m/pytorch-eager-f32" 300 "${ref[@]}" "${args[@]}" --channels-last --init "$work/init_$m.safetensors"
  if [[ "$COMPILE_CAP" != 0 ]]; then
    record "$m/pytorch-compile" "$COMPILE_CAP" "${ref[@]}" "${args[@]}" "${bf16[@]}" --channels-last --compile --init "$work/init_$m.safetensors"
  fi
done

# 2. End to end from JPEG files: ResNet-50, the authors' augmentations, every lever on; the
#    loader's CPU augmentation and the device augmentation, against the synthetic step above.
train_cfg() { # FILE DATA AUGMENT EXTRA...
  local file="$1" data="$2" augment="$3"; shift 3
  cat > "$file" <<TOML
seed = 0
epochs = $e2e_epochs
batch_size = $e2e_batch
workers = $threads
device = "$DEVICE"
probe = true
[data]
source = { kind = "image_folder", path = "$data" }
image_size = $e2e_size
[model]
arch = "$e2e_arch"
stem = "$e2e_stem"
[method]
kind = "simclr_mlp"
out_dim = 128
[schedule]
lr = 0.3
warmup_epochs = 1.0
[speed]
augment = "$augment"
fused_optimizer = true
$(for l in "$@"; do echo "$l"; done)
[log]
every_steps = 5
TOML
}
if [[ "$E2E" == 1 ]]; then
  echo "== jpeg folder ($(date -u +%H:%M:%S))"
  timeout 120 "$BIN/make_jpeg_folder" "$work/jpeg" "${jpegs[@]}" >> "$OUT/stderr.log" 2>&1
  echo "{\"name\": \"e2e/jpeg-files\", \"result\": {\"bytes\": $(du -sb "$work/jpeg" | cut -f1), \"files\": ${jpegs[0]}, \"width\": ${jpegs[1]}, \"height\": ${jpegs[2]}}}" >> "$res"
  for augment in loader device; do
    extra=(); [[ "$augment" == device ]] && extra=("source_size = $e2e_source")
    train_cfg "$work/e2e-$augment.toml" "$work/jpeg" "$augment" "${extra[@]}"
    echo "== e2e/$augment ($(date -u +%H:%M:%S))"
    timeout 300 "$BIN/directclr" train --config "$work/e2e-$augment.toml" --out "$work/run-e2e-$augment" >> "$OUT/stderr.log" 2>&1
    cp "$work/run-e2e-$augment/metrics.jsonl" "$OUT/e2e-$augment.metrics.jsonl" 2>/dev/null
    "$PY" - "$work/run-e2e-$augment/metrics.jsonl" "e2e/$augment" >> "$res" <<'PYEOF'
import json, sys
try:
    lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    ep = [l for l in lines if l["kind"] == "epoch"]
    later = ep[1:] or ep  # the first epoch pays for cuDNN's search and the first decode
    print(json.dumps({"name": sys.argv[2], "result": {"epochs": len(ep), "images_per_s_epochs": [l["images_per_s"] for l in ep],
          "images_per_s": sum(l["images_per_s"] for l in later) / len(later), "loss": ep[-1]["loss"]}}))
except Exception as e:
    print(json.dumps({"name": sys.argv[2], "error": repr(e)}))
PYEOF
  done
fi

# 3. bf16 vs f32: the same short run (Fashion-MNIST subset, ResNet-18 width 1, DirectCLR, SGD).
if [[ "$CURVES" == 1 ]]; then
  for prec in bf16 off; do
    sed -e "s/^device = .*/device = \"$DEVICE\"/" -e "s/^width_multiplier = .*/width_multiplier = $curve_width/" \
        -e "s/^limit = .*/limit = $curve_limit/" -e "s/^epochs = .*/epochs = $curve_epochs/" \
        -e "s/^workers = .*/workers = $threads/" configs/fashion-mnist-quick.toml > "$work/curve-$prec.toml"
    printf '\n[precision]\nautocast = "%s"\nchannels_last = true\n' "$prec" >> "$work/curve-$prec.toml"
    echo "== curve/$prec ($(date -u +%H:%M:%S))"
    timeout 300 "$BIN/directclr" train --config "$work/curve-$prec.toml" --out "$work/run-curve-$prec" >> "$OUT/stderr.log" 2>&1
    cp "$work/run-curve-$prec/metrics.jsonl" "$OUT/curve-$prec.metrics.jsonl" 2>/dev/null
  done
fi

# 4. Each lever alone: all on, minus one.
if [[ "$LEVERS" == 1 ]]; then
  for m in r18 r50; do
    declare -n args="$m"
    if [[ "$STEP" != 1 ]]; then
      record "$m/ours" 300 "$ours" --device "$DEVICE" "${args[@]}" "${all[@]}"
    fi
    record "$m/ours-no-fused" 300 "$ours" --device "$DEVICE" "${args[@]}" "${bf16[@]}" --channels-last
    record "$m/ours-no-channels-last" 300 "$ours" --device "$DEVICE" "${args[@]}" "${bf16[@]}" --fused
    record "$m/ours-no-cudnn-benchmark" 300 "$ours" --device "$DEVICE" "${args[@]}" "${all[@]}" --no-cudnn-benchmark
    record "$m/ours-sync-every-step" 300 "$ours" --device "$DEVICE" "${args[@]}" "${all[@]}" --sync-every-step
  done
fi

"$PY" benches/gpu/summarise.py "$OUT" > "$OUT/results.md"
cat "$OUT/results.md"
