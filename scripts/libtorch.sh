#!/usr/bin/env bash
# Installs libtorch 2.11.0 (CPU + CUDA 13.0 build, from the PyPI wheel `torch==2.11.0`) and the
# CUDA 13.0 runtime and CUPTI libraries that `libtorch_cpu.so` needs even on CPU, into a per-user
# cache that every checkout of the project reuses. Prints the libtorch folder (the value for
# `LIBTORCH`) on its last line of standard output.
#
# Environment:
#   LIBTORCH          use this libtorch folder (e.g. an installed PyTorch's `torch/`) instead
#   DIRECTCLR_CACHE   cache root (default: ${XDG_CACHE_HOME:-~/.cache}/directclr)
#
# Layout of the cache (the same as a Python site-packages, so libtorch's own RPATH
# `$ORIGIN/../../nvidia/cu13/lib` finds the CUDA runtime):
#   libtorch-2.11.0/torch/{lib,include,share}
#   libtorch-2.11.0/nvidia/cu13/lib/{libcudart.so.13,libcupti.so.13}
set -euo pipefail

if [[ -n "${LIBTORCH:-}" ]]; then
  if [[ ! -f "$LIBTORCH/lib/libtorch_cpu.so" ]]; then
    echo "libtorch.sh: LIBTORCH=$LIBTORCH has no lib/libtorch_cpu.so" >&2
    exit 1
  fi
  echo "$LIBTORCH"
  exit 0
fi

cache="${DIRECTCLR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/directclr}"
dest="$cache/libtorch-2.11.0"
if [[ -f "$dest/.complete" ]]; then
  echo "$dest/torch"
  exit 0
fi

# Pinned wheels and their SHA-256 (checked before anything is unpacked).
wheels=(
  "torch==2.11.0|torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl|7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a"
  "nvidia-cuda-runtime==13.0.96|nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl|7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"
  "nvidia-cuda-cupti==13.0.85|nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl|4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8"
)

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "libtorch.sh: python3 with pip is needed to fetch the wheels" >&2; exit 1; }
mkdir -p "$cache/wheels"
tmp="$(mktemp -d "$cache/.unpack.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

for entry in "${wheels[@]}"; do
  IFS='|' read -r req file sha <<<"$entry"
  wheel="$cache/wheels/$file"
  if [[ ! -f "$wheel" ]] || ! echo "$sha  $wheel" | sha256sum -c --status; then
    echo "libtorch.sh: downloading $req" >&2
    rm -f "$wheel"
    "$python" -m pip download --quiet --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_25_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --python-version 3.11 --implementation cp -d "$cache/wheels" "$req" >&2
  fi
  if ! echo "$sha  $wheel" | sha256sum -c --status; then
    echo "libtorch.sh: $wheel does not have the pinned SHA-256 $sha" >&2
    exit 1
  fi
  echo "libtorch.sh: unpacking $file" >&2
  "$python" - "$wheel" "$tmp" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
keep = ("torch/lib/", "torch/include/", "torch/share/", "nvidia/cu13/lib/")
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.filename.startswith(keep) and not info.filename.startswith("torch/lib/libtorch_python"):
            z.extract(info, out)
PY
done
chmod -R u+rwX,go+rX "$tmp"
touch "$tmp/.complete"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "$dest/torch"
