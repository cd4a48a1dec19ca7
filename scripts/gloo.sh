#!/usr/bin/env bash
# Installs the headers of Gloo (the collective library behind PyTorch's ProcessGroupGloo) into
# the per-user cache, once. The PyPI torch wheel carries the compiled Gloo inside
# libtorch_cpu.so and c10d's headers, but not Gloo's own headers, which
# `torch/csrc/distributed/c10d/ProcessGroupGloo.hpp` includes. They come from Debian's
# `libgloo-dev` package, fetched with the ordinary package client (`apt-get download`, into a
# temporary folder; `apt-get update` first when the package lists are empty, which needs root).
# Only `usr/include/gloo` is unpacked, nothing is installed system-wide. Prints the include
# folder (the value for `DIRECTCLR_GLOO_INCLUDE`) on its last line of standard output.
#
# The unpacked tree is checked against a pinned SHA-256 (of the sorted `sha256sum` listing of
# every file under gloo/). A package whose headers differ (a newer version) is accepted only if
# the shim (crates/directclr-sys/shim/dist.cpp) still compiles against them, which needs
# libtorch's headers (`LIBTORCH`, as set by scripts/env.sh); that is said on standard error.
#
# Why these headers fit: the shim only names Gloo types through pointers
# (`std::shared_ptr<gloo::transport::Device>` in ProcessGroupGloo::Options, the members of
# ProcessGroupGloo) and never constructs a Gloo object itself; every Gloo object is built inside
# libtorch_cpu.so by its own Gloo. So the header version only has to declare those names.
#
# Environment:
#   DIRECTCLR_GLOO_INCLUDE  use this folder (it must contain gloo/context.h) instead
#   DIRECTCLR_CACHE         cache root (default: ${XDG_CACHE_HOME:-~/.cache}/directclr)
#   LIBTORCH                libtorch's root, to check headers that differ from the pinned ones
set -euo pipefail

if [[ -n "${DIRECTCLR_GLOO_INCLUDE:-}" ]]; then
  if [[ ! -f "$DIRECTCLR_GLOO_INCLUDE/gloo/context.h" ]]; then
    echo "gloo.sh: DIRECTCLR_GLOO_INCLUDE=$DIRECTCLR_GLOO_INCLUDE has no gloo/context.h" >&2
    exit 1
  fi
  echo "$DIRECTCLR_GLOO_INCLUDE"
  exit 0
fi

package="libgloo-dev"
pinned_version="0.0~git20220518.5b14351-3"
# sha256 of `find gloo -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum` in the include
# folder unpacked from $package $pinned_version.
pinned_tree_sha="a8326d1cc749a9f4ccf9f630816ebc4b2fc09bda1046326bb124f0f13ace85f7"

cache="${DIRECTCLR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/directclr}"
pinned_dest="$cache/gloo-headers-git20220518.5b14351"
# The pinned headers first, then any other version accepted earlier.
for d in "$pinned_dest" "$cache"/gloo-headers-*; do
  if [[ -f "$d/.complete" ]]; then
    echo "$d/include"
    exit 0
  fi
done

fail() {
  echo "gloo.sh: $*" >&2
  echo "gloo.sh: Gloo's headers come from Debian's package '$package'; or set" \
    "DIRECTCLR_GLOO_INCLUDE to a folder holding gloo/context.h" >&2
  exit 1
}

command -v apt-get >/dev/null || fail "apt-get is needed to fetch the package '$package'"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || fail "python3 is needed to unpack the package '$package'"

tree_sha() { (cd "$1" && find gloo -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1); }
candidate() { apt-cache policy "$package" 2>/dev/null | sed -n 's/^ *Candidate: *//p'; }
apt_update() {
  if [[ "$(id -u)" != 0 ]]; then
    fail "$1; run 'apt-get update' as root, then this script again"
  fi
  echo "gloo.sh: $1: running apt-get update" >&2
  apt-get update -qq >&2 || fail "apt-get update failed"
  updated=1
}

updated=0
lists="$(eval "$(apt-config shell L Dir::State::Lists/d)"; echo "${L:-/var/lib/apt/lists/}")"
if ! compgen -G "$lists/*_Packages*" >/dev/null; then
  apt_update "the package lists ($lists) are empty"
fi
version="$(candidate)"
if [[ -z "$version" || "$version" == "(none)" ]] && [[ $updated == 0 ]]; then
  apt_update "no version of '$package' in the package lists"
  version="$(candidate)"
fi
[[ -n "$version" && "$version" != "(none)" ]] || fail "the package '$package' cannot be had from this machine's package sources"

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.gloo.XXXXXX")"
dl="$(mktemp -d "${TMPDIR:-/tmp}/directclr-gloo-deb.XXXXXX")"
trap 'rm -rf "$tmp" "$dl"' EXIT
# As root, apt downloads as the user _apt: let it write the temporary folder.
if [[ "$(id -u)" == 0 ]] && id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
download() { (cd "$dl" && apt-get download -q "$package" >&2); }
echo "gloo.sh: apt-get download $package ($version)" >&2
if ! download; then
  if [[ $updated == 0 && "$(id -u)" == 0 ]]; then
    apt_update "apt-get download $package failed (stale package lists?)"
    version="$(candidate)"
    download || fail "apt-get download $package failed"
  else
    fail "apt-get download $package failed"
  fi
fi
shopt -s nullglob
debs=("$dl/${package}_"*.deb)
shopt -u nullglob
[[ ${#debs[@]} == 1 ]] || fail "apt-get download left no single ${package}_*.deb in $dl"
deb="${debs[0]}"

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
test -f "$tmp/include/gloo/context.h" || fail "$(basename "$deb") holds no gloo/context.h"

sha="$(tree_sha "$tmp/include")"
if [[ "$sha" == "$pinned_tree_sha" ]]; then
  dest="$pinned_dest"
else
  # Other headers (a newer package): accept them only if the shim still compiles against them.
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  libtorch="${LIBTORCH:-$root/.libtorch}"
  [[ -f "$libtorch/include/torch/csrc/distributed/c10d/ProcessGroupGloo.hpp" ]] ||
    fail "$package $version's headers differ from the pinned ones ($pinned_version, tree SHA-256 $pinned_tree_sha; got $sha), and without libtorch's headers (LIBTORCH) the shim cannot be checked against them"
  "${CXX:-c++}" -fsyntax-only -std=c++17 -D_GLIBCXX_USE_CXX11_ABI=1 -DUSE_C10D_GLOO -w \
    -I"$libtorch/include" -I"$libtorch/include/torch/csrc/api/include" -I"$tmp/include" \
    "$root/crates/directclr-sys/shim/dist.cpp" >&2 ||
    fail "$package $version's headers differ from the pinned ones ($pinned_version) and the shim does not compile against them"
  echo "gloo.sh: accepting $package $version: its headers differ from the pinned $pinned_version (tree SHA-256 $sha, pinned $pinned_tree_sha), and the shim compiles against them" >&2
  dest="$cache/gloo-headers-$(echo "$version" | tr -c 'A-Za-z0-9.+\n-' '_')"
fi

chmod -R u+rwX,go+rX "$tmp"
touch "$tmp/.complete"
rm -rf "$dest"
mv "$tmp" "$dest"
echo "$dest/include"
