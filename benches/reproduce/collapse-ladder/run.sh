#!/usr/bin/env bash
# The collapse ladder: where, between the theory lab's toy encoder and the quick start's ResNet-18,
# does the paper's ordering (r trained without a projector more collapsed than with one or with
# DirectCLR, Figures 7b and 9) appear or disappear? Each rung changes one thing from the one
# before it:
#   toy           the theory lab's encoder on Gaussian data: L = 1 linear under strong augmentation
#                 (Section 4), L = 2 linear under implicit regularisation (Section 5), z
#                 L2-normalised as SimCLR's (`directclr theory projector --z-norm l2`, 20 s)
#   linear        r = W·vec(x) + b                              (the toy's L = 1 encoder, on pixels)
#   deep_linear   r = W₂(W₁·vec(x) + b₁) + b₂, 512 hidden       (+ depth, still a linear map)
#   mlp           one hidden layer of 512 with ReLU             (+ the nonlinearity)
#   conv          one 3×3 conv (64 channels), ReLU, avg-pool    (weight sharing + pooling instead)
#   cnn           CIFAR stem + 4 plain stages (8…64 ch), BN     (+ depth, normalisation)
#   residual_cnn_gamma1  cnn + the ResNet's shortcuts, every block's last BN γ at 1 as the
#                 plain cnn's                                   (+ residuals alone)
#   residual_cnn  the same with zero_init_residual (last γ 0)   (+ the ResNet's initialisation)
#   resnet18      the quick start's ResNet-18, width 0.125      (+ a second block per stage)
# and two controls beside the ladder, for whether the no-projector r is flat because the loss
# sparsifies a non-negative r:
#   cnn_signed_r, residual_cnn_signed_r   cnn and residual_cnn without the last block's ReLU
#                 (`final_relu = false`): r = avgpool(branch + shortcut) takes either sign
# each under three augmentation conditions:
#   authors       the authors' recipe at 32 px (the quick start's)
#   strong        crops of 2–30 % of the image in both views    (Section 4: augmentation stronger
#                                                                than the data, the mechanism under
#                                                                which the theory lab reproduces the
#                                                                ordering)
#   weak          crops of 80–100 %, flips only                 (Section 5: weak augmentation,
#                                                                collapse by implicit regularisation,
#                                                                where the lab finds it reversed)
# and three heads (no projector, a linear 64→64 projector, DirectCLR d0 = 16), r 64-d throughout.
# Every run is a `directclr reproduce` row (train, linear probe on features, kNN, spectra of the
# first 2,000 test images); summarise.py writes the table of RESULTS.md from their eval.json.
#
# Usage: benches/reproduce/collapse-ladder/run.sh [OUT]        (default out/collapse-ladder)
#   RUNGS="linear mlp" CONDITIONS="strong" SEEDS="[0, 1, 2]" THREADS=1 JOBS=2 to choose; the linear and MLP rungs
#   always run seeds 0, 1, 2 (seconds each; deep_linear too). Finished runs are reused, interrupted ones resumed.
#   Defaults: JOBS = the number of cores, THREADS = 1 (one single-threaded process per core).
# Time, the whole ladder in one pass on 2 idle cores (2-core AMD EPYC, defaults, the two controls
# included): 2,451 s, 41 minutes (RESULTS.md). Per rung × condition, one process: linear 25–32 s,
# deep_linear and mlp 109–117 s (three seeds), conv 63–74 s, cnn 159–164 s, residual CNNs
# 161–200 s, the controls 168–197 s, resnet18 292–338 s (one seed: three runs of 5 epochs, then
# the evaluation).
#
# Before editing this file while it runs, write a copy and move it into place (bash reads a
# running script as it goes).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$root"
out="${1:-out/collapse-ladder}"
source scripts/env.sh >/dev/null
cargo build --release -q -p directclr-cli
bin="$root/target/release/directclr"
# libtorch threads per run: 1 by default, as JOBS runs share the cores (oversubscribed OpenMP
# threads spin, and a run then slows 10-30×); THREADS=2 JOBS=1 for a single run on idle cores.
threads="${THREADS:-1}"
# rung × condition runs at a time: by default one per core (the small rungs use two threads
# poorly, so one single-threaded process per core keeps every core busy).
parallel="${JOBS:-$(nproc)}"
[[ "$parallel" =~ ^[1-9][0-9]*$ ]] || { echo "JOBS must be a positive integer, not \`$parallel\`" >&2; exit 2; }
read -r -a rungs <<< "${RUNGS:-toy linear deep_linear mlp conv cnn residual_cnn_gamma1 residual_cnn resnet18 cnn_signed_r residual_cnn_signed_r}"
read -r -a conditions <<< "${CONDITIONS:-authors strong weak}"

model_table() {
  case "$1" in
    linear) printf 'arch = "linear"\ndim = 64\n' ;;
    deep_linear | mlp) printf 'arch = "%s"\ndim = 64\nhidden = 512\n' "$1" ;;
    conv) printf 'arch = "conv"\ndim = 64\n' ;;
    cnn | residual_cnn) printf 'arch = "%s"\ndim = 64\nstages = 4\n' "$1" ;;
    residual_cnn_gamma1) printf 'arch = "residual_cnn"\ndim = 64\nstages = 4\nzero_init_residual = false\n' ;;
    cnn_signed_r | residual_cnn_signed_r)
      printf 'arch = "%s"\ndim = 64\nstages = 4\nfinal_relu = false\n' "${1%_signed_r}" ;;
    resnet18) printf 'arch = "resnet18"\nstem = "cifar"\nwidth_multiplier = 0.125\nzero_init_residual = true\n' ;;
    *) echo "unknown rung \`$1\`" >&2; exit 2 ;;
  esac
}

augment_tables() {
  case "$1" in
    authors) ;;
    strong)
      for v in view1 view2; do
        printf '[augment.%s]\ncrop = { scale = [0.02, 0.3] }\n' "$v"
      done ;;
    weak)
      for v in view1 view2; do
        printf '[augment.%s]\ncrop = { scale = [0.8, 1.0] }\ncolor_jitter = { p = 0.0 }\n' "$v"
        printf 'grayscale = { p = 0.0 }\nblur = { p = 0.0 }\nsolarize = { p = 0.0 }\n'
      done ;;
    *) echo "unknown condition \`$1\`" >&2; exit 2 ;;
  esac
}

# One rung × condition (or the toy rung): writes its configs, runs `directclr reproduce`, prints
# its time; a failure leaves FAILED in the folder and the log's tail on stderr.
run_one() { # rung condition
  local rung=$1 cond=$2 dir seeds start
  if [[ "$rung" == toy ]]; then
    dir="$out/toy"
    mkdir -p "$dir"
    rm -f "$dir/FAILED"
    start=$SECONDS
    "$bin" --threads "$threads" theory projector --heads none,linear,direct-clr --z-norm l2 \
      --out "$dir" > "$out/toy.log" 2>&1 || { tail -5 "$out/toy.log" >&2; touch "$dir/FAILED"; return 1; }
    echo "toy: $((SECONDS - start)) s"
    return 0
  fi
  case "$rung" in
    linear | deep_linear | mlp) seeds="[0, 1, 2]" ;;
    *) seeds="${SEEDS:-[0]}" ;;
  esac
  dir="$out/$rung-$cond"
  mkdir -p "$dir"
  rm -f "$dir/FAILED"
  {
    cat "$here/base.toml"
    printf '\n[model]\n'
    model_table "$rung"
    printf '\n'
    augment_tables "$cond"
  } > "$dir/pretrain.toml"
  sed -e "s|@TITLE@|Collapse ladder: $rung, $cond augmentations|" -e "s|@SEEDS@|$seeds|" \
    "$here/reproduce.toml" > "$dir/reproduce.toml"
  start=$SECONDS
  if ! "$bin" --threads "$threads" reproduce --config "$dir/reproduce.toml" --out "$dir" --quiet \
      > "$dir/reproduce.log" 2>&1; then
    echo "$rung-$cond failed: see $dir/reproduce.log" >&2
    tail -5 "$dir/reproduce.log" >&2
    touch "$dir/FAILED"
    return 1
  fi
  echo "$rung-$cond: $((SECONDS - start)) s"
}

# An unknown rung or condition stops here, before any run.
for cond in "${conditions[@]}"; do augment_tables "$cond" > /dev/null; done
for rung in "${rungs[@]}"; do [[ "$rung" == toy ]] || model_table "$rung" > /dev/null; done

# Every rung × condition, JOBS at a time (each a separate process with THREADS libtorch threads).
for rung in "${rungs[@]}"; do
  [[ "$rung" == toy ]] && todo=(toy) || todo=("${conditions[@]}")
  for cond in "${todo[@]}"; do
    if (( parallel == 1 )); then
      run_one "$rung" "$cond" || exit 1
    else
      while (( $(jobs -rp | wc -l) >= parallel )); do sleep 1; done
      run_one "$rung" "$cond" &
    fi
  done
done
wait
if compgen -G "$out/*/FAILED" > /dev/null; then
  echo "failed: $(compgen -G "$out/*/FAILED" | xargs -n1 dirname | xargs -n1 basename | tr '\n' ' ')" >&2
  exit 1
fi
echo "ladder: $SECONDS s in all"
python3 "$here/summarise.py" "$out" | tee "$out/ladder.md"
