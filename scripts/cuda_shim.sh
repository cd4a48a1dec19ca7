#!/usr/bin/env bash
# Builds libdirectclr_cuda.so, the CUDA part of the distributed shim
# (crates/directclr-sys/shim/dist_cuda.cpp: PyTorch's ProcessGroupNCCL, the `nccl` backend of
# `[dist]`). It is a library of its own, not linked into the binary: ProcessGroupNCCL.hpp
# needs the headers of the CUDA runtime, cuBLAS, cuSPARSE, cuSOLVER and NCCL, which the CPU
# build lacks, and its code lives in libtorch_cuda.so, which the binary opens only when CUDA is
# asked for. The binary looks for the library beside itself (or at $DIRECTCLR_CUDA_SHIM).
#
# Usage: scripts/cuda_shim.sh [OUT_DIR]     (default: target/release, beside the binary)
# Prints the library's path on its last line of standard output.
#
# The headers are those of the CUDA 13.0 wheels that torch 2.11.0 (cu130) pins, gathered once
# into the per-user cache (cuda-headers-13.0/). Each comes from, in this order:
#   - a Python site-packages that holds the same wheel version ($DIRECTCLR_CUDA_SITE, else the
#     benchmark venv ~/.cache/directclr/bench-venv, else the python3 that has torch 2.11.0):
#     only the files its RECORD lists under the include folder are copied;
#   - else the wheel itself from PyPI (pinned version and SHA-256; only headers are unpacked).
# When they must be downloaded, the cuBLAS, cuSPARSE, cuSOLVER and NCCL wheels carry their
# libraries too (135 to 570 MB each unpacked, for a few MB of headers); the CUDA runtime
# (already in the cache for libtorch), CRT and CCCL wheels are small.
#
# Environment:
#   LIBTORCH             the libtorch folder (default: scripts/libtorch.sh's, as for the binary)
#   DIRECTCLR_CUDA_SITE  a site-packages to take the headers from (see above)
#   DIRECTCLR_CACHE      cache root (default: ${XDG_CACHE_HOME:-~/.cache}/directclr)
#   CXX                  the C++ compiler (default g++)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_dir="${1:-$root/target/release}"
cache="${DIRECTCLR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/directclr}"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "cuda_shim.sh: python3 is needed to unpack the wheels" >&2; exit 1; }

if [[ -z "${LIBTORCH:-}" ]]; then
  LIBTORCH="$("$root/scripts/libtorch.sh" | tail -n 1)"
fi
[[ -f "$LIBTORCH/lib/libtorch_cuda.so" ]] || { echo "cuda_shim.sh: $LIBTORCH/lib has no libtorch_cuda.so" >&2; exit 1; }

# name==version|wheel file|SHA-256|folder inside the wheel|a header it must provide
wheels=(
  "nvidia-cuda-runtime==13.0.96|nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl|7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548|nvidia/cu13/include|cuda_runtime_api.h"
  "nvidia-cuda-crt==13.0.88|nvidia_cuda_crt-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl|2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4|nvidia/cu13/include|crt/host_config.h"
  "nvidia-cuda-cccl==13.0.85|nvidia_cuda_cccl-13.0.85-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl|e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649|nvidia/cu13/include|nv/target"
  "nvidia-cublas==13.1.0.3|nvidia_cublas-13.1.0.3-py3-none-manylinux_2_27_x86_64.whl|ee8722c1f0145ab246bccb9e452153b5e0515fd094c3678df50b2a0888b8b171|nvidia/cu13/include|cublas_v2.h"
  "nvidia-cusparse==12.6.3.3|nvidia_cusparse-12.6.3.3-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl|2b3c89c88d01ee0e477cb7f82ef60a11a4bcd57b6b87c33f789350b59759360b|nvidia/cu13/include|cusparse.h"
  "nvidia-cusolver==12.0.4.66|nvidia_cusolver-12.0.4.66-py3-none-manylinux_2_27_x86_64.whl|0a759da5dea5c0ea10fd307de75cdeb59e7ea4fcb8add0924859b944babf1112|nvidia/cu13/include|cusolverDn.h"
  "nvidia-nccl-cu13==2.28.9|nvidia_nccl_cu13-2.28.9-py3-none-manylinux_2_18_x86_64.whl|e4553a30f34195f3fa1da02a6da3d6337d28f2003943aa0a3d247bbc25fefc42|nvidia/nccl/include|nccl.h"
)

# A site-packages to copy headers from, if any.
site="${DIRECTCLR_CUDA_SITE:-}"
if [[ -z "$site" ]]; then
  for s in "$cache"/bench-venv/lib/python3*/site-packages; do
    [[ -d "$s/torch" ]] && site="$s"
  done
fi
if [[ -z "$site" ]]; then
  site="$("$python" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)) if torch.__version__.startswith("2.11.0") else "")' 2>/dev/null || true)"
fi

headers="$cache/cuda-headers-13.0"
if [[ ! -f "$headers/.complete" ]]; then
  mkdir -p "$cache/wheels"
  tmp="$(mktemp -d "$cache/.cuda-headers.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  for entry in "${wheels[@]}"; do
    IFS='|' read -r req file sha inner probe <<<"$entry"
    name="${req%%==*}"
    version="${req##*==}"
    dist_info="${site:+$site/${name//-/_}-$version.dist-info}"
    if [[ -n "$dist_info" && -f "$dist_info/RECORD" && -e "$site/$inner/$probe" ]]; then
      echo "cuda_shim.sh: headers of $req from $site" >&2
      "$python" - "$dist_info/RECORD" "$site" "$inner" "$tmp" <<'PY'
import csv, os, shutil, sys
record, site, inner, out = sys.argv[1:]
with open(record, newline="") as f:
    for row in csv.reader(f):
        path = row[0]
        if path.startswith(inner + "/"):
            target = os.path.join(out, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(site, path), target)
PY
    else
      wheel="$cache/wheels/$file"
      if [[ ! -f "$wheel" ]] || ! echo "$sha  $wheel" | sha256sum -c --status; then
        echo "cuda_shim.sh: downloading $req" >&2
        rm -f "$wheel"
        "$python" -m pip download --quiet --no-deps --only-binary=:all: \
          --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
          --platform manylinux_2_18_x86_64 --platform manylinux_2_17_x86_64 \
          --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp \
          -d "$cache/wheels" "$req" >&2
      fi
      if ! echo "$sha  $wheel" | sha256sum -c --status; then
        echo "cuda_shim.sh: $wheel does not have the pinned SHA-256 $sha" >&2
        exit 1
      fi
      echo "cuda_shim.sh: unpacking the headers of $file" >&2
      "$python" - "$wheel" "$inner" "$tmp" <<'PY'
import sys, zipfile
wheel, inner, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.filename.startswith(inner + "/") and not info.is_dir():
            z.extract(info, out)
PY
    fi
    [[ -e "$tmp/$inner/$probe" ]] || { echo "cuda_shim.sh: $req gave no $inner/$probe" >&2; exit 1; }
  done
  chmod -R u+rwX,go+rX "$tmp"
  touch "$tmp/.complete"
  rm -rf "$headers"
  mv "$tmp" "$headers"
  trap - EXIT
fi

mkdir -p "$out_dir"
lib="$out_dir/libdirectclr_cuda.so"
echo "cuda_shim.sh: compiling $lib against $LIBTORCH" >&2
# -w: libtorch's headers warn under recent g++ (as for the main shim, built with warnings off).
# --no-undefined: every symbol must resolve against libtorch now, not at the first call.
# No rpath: the binary opens this library after libtorch_cuda.so, whose sonames it then reuses.
"${CXX:-g++}" -std=c++17 -O2 -fPIC -shared -w -D_GLIBCXX_USE_CXX11_ABI=1 -DUSE_C10D_NCCL \
  -I"$LIBTORCH/include" -I"$LIBTORCH/include/torch/csrc/api/include" \
  -I"$headers/nvidia/cu13/include" -I"$headers/nvidia/nccl/include" \
  "$root/crates/directclr-sys/shim/dist_cuda.cpp" -o "$lib.tmp" \
  -L"$LIBTORCH/lib" -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -ltorch_cpu -lc10 -Wl,--as-needed \
  -Wl,--no-undefined -Wl,--allow-shlib-undefined
mv "$lib.tmp" "$lib"
echo "$lib"
