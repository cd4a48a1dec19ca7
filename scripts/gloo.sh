#!/usr/bin/env bash
# Installs the headers of Gloo (the collective library behind PyTorch's ProcessGroupGloo) into
# the per-user cache, once. The PyPI torch wheel carries the compiled Gloo inside
# libtorch_cpu.so and c10d's headers, but not Gloo's own headers, which
# `torch/csrc/distributed/c10d/ProcessGroupGloo.hpp` includes. They come from Debian's
# `libgloo-dev` package (fetched by URL, checked against a pinned SHA-256; only
# `usr/include/gloo` is unpacked, nothing is installed system-wide). Prints the include folder
# (the value for `DIRECTCLR_GLOO_INCLUDE`) on its last line of standard output.
#
# Why these headers fit: the shim only names Gloo types through pointers
# (`std::shared_ptr<gloo::transport::Device>` in ProcessGroupGloo::Options, the members of
# ProcessGroupGloo) and never constructs a Gloo object itself; every Gloo object is built inside
# libtorch_cpu.so by its own Gloo. So the header version only has to declare those names.
#
# Environment:
#   DIRECTCLR_GLOO_INCLUDE  use this folder (it must contain gloo/context.h) instead
#   DIRECTCLR_CACHE         cache root (default: ${XDG_CACHE_HOME:-~/.cache}/directclr)
set -euo pipefail

if [[ -n "${DIRECTCLR_GLOO_INCLUDE:-}" ]]; then
  if [[ ! -f "$DIRECTCLR_GLOO_INCLUDE/gloo/context.h" ]]; then
    echo "gloo.sh: DIRECTCLR_GLOO_INCLUDE=$DIRECTCLR_GLOO_INCLUDE has no gloo/context.h" >&2
    exit 1
  fi
  echo "$DIRECTCLR_GLOO_INCLUDE"
  exit 0
fi

version="0.0~git20220518.5b14351-3"
file="libgloo-dev_${version}_amd64.deb"
url="https://deb.debian.org/debian/pool/main/g/gloo/$file"
sha="80529c9fd8af452faf489e686b94bf87075965c40673803810c4f41634b1e299"

cache="${DIRECTCLR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/directclr}"
dest="$cache/gloo-headers-git20220518.5b14351"
if [[ -f "$dest/.complete" ]]; then
  echo "$dest/include"
  exit 0
fi

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "gloo.sh: python3 is needed to unpack the package" >&2; exit 1; }
mkdir -p "$cache/debs"
deb="$cache/debs/$file"
if [[ ! -f "$deb" ]] || ! echo "$sha  $deb" | sha256sum -c --status; then
  echo "gloo.sh: downloading $url" >&2
  rm -f "$deb"
  "$python" - "$url" "$deb.part" <<'PY'
import sys, urllib.request
url, out = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(url, timeout=120) as r, open(out, "wb") as f:
    f.write(r.read())
PY
  mv "$deb.part" "$deb"
fi
if ! echo "$sha  $deb" | sha256sum -c --status; then
  echo "gloo.sh: $deb does not have the pinned SHA-256 $sha" >&2
  exit 1
fi

tmp="$(mktemp -d "$cache/.gloo.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# A .deb is an `ar` archive holding data.tar.*; read both with Python's standard library.
"$python" - "$deb" "$tmp/include" <<'PY'
import io, os, sys, tarfile
deb, out = sys.argv[1], sys.argv[2]
data = open(deb, "rb").read()
assert data[:8] == b"!<arch>\n", "not an ar archive"
pos, members = 8, {}
while pos + 60 <= len(data):
    header = data[pos:pos + 60]
    name = header[:16].decode().strip().rstrip("/")
    size = int(header[48:58].decode().strip())
    members[name] = data[pos + 60:pos + 60 + size]
    pos += 60 + size + (size & 1)
payload = next(v for k, v in members.items() if k.startswith("data.tar"))
prefix = "./usr/include/gloo/"
with tarfile.open(fileobj=io.BytesIO(payload)) as t:
    for m in t.getmembers():
        if m.isfile() and m.name.startswith(prefix):
            target = os.path.join(out, "gloo", m.name[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with t.extractfile(m) as src, open(target, "wb") as dst:
                dst.write(src.read())
PY
test -f "$tmp/include/gloo/context.h" || { echo "gloo.sh: $file holds no gloo/context.h" >&2; exit 1; }
chmod -R u+rwX,go+rX "$tmp"
touch "$tmp/.complete"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "$dest/include"
