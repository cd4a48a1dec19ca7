#!/usr/bin/env bash
# `directclr spectrum --embeddings FILE.npy` against numpy f64 and PyTorch f64 on the same .npy
# file, in one go: L2-normalised rows, covariance of Eqn 1 (divided by N), eigenvalues.
#
#   Case A: N_A × D (50,000 × 2048 f32, 400 MB). Timed, alternating, best of REPEATS:
#     - directclr spectrum --threads THREADS --embeddings A.npy (whole command: process start,
#       reading the file in chunks, the f64 covariance, eigenvalues, CSV/JSON/figures);
#     - numpy f64 as a user writes it: np.load(f).astype(np.float64), row norms, z -= mean,
#       z.T @ z / N, np.linalg.eigvalsh (holds the f32 array, an f64 copy and temporaries);
#     - PyTorch f64 likewise: torch.from_numpy(np.load(f)).double(), F.normalize, centring,
#       z.T @ z / N, torch.linalg.eigvalsh;
#     - numpy f64 streamed: blocks of 8192 rows read from the file, an f64 Gram accumulated
#       (shifted by the first block's mean), so memory is O(D² + block) as in directclr.
#     The eigenvalues of all four are compared: max |λ_i − λ'_i| / λ₁ over all D, pairwise.
#   Case B: N_B × D (500,000 × 2048 f32, 4.1 GB), directclr only (and the streamed numpy
#     reference, time and agreement only; STREAMED_B=0 skips it). numpy/PyTorch are not run on
#     the whole file: an f64 copy is 8 GB, on a machine without swap. The file is deleted at the
#     end (KEEP_B=1 keeps it).
#
# Every command runs under /usr/bin/time -v: "wall" is the whole process (interpreter start and
# `import torch` included for Python), "compute" is the Python side's own clock from opening the
# file to the eigenvalues; peak RSS is "Maximum resident set size". The files are read right
# after being written, so from the page cache, not the disk (all tools alike).
#
# The data (seeded, written with numpy.lib.format.open_memmap in blocks of 8192 rows, never
# held whole): z = g · s + m, g standard normal, column scales s_k = k^-0.6 with the last quarter
# of the columns shrunk by 1e-3 (a near-collapsed tail), m a fixed random offset of norm
# 0.5 ‖s‖. Files live in DATA (default out/bench-analysis/, git-ignored); A is kept for reruns.
#
# Settings (environment): N_A (50000), N_B (500000, 0 skips case B), D (2048), THREADS (2: the
# same for all: OMP/MKL/OpenBLAS variables, torch.set_num_threads, directclr --threads), REPEATS
# (3, case A), STREAMED_B (1), KEEP_B (0), BUILD (1: cargo build --release -p directclr-cli
# first), DATA. BENCH_PYTHON: a Python with numpy and torch 2.11 (default: the venv made by
#   python3 -m venv ~/.cache/directclr/bench-venv &&
#   ~/.cache/directclr/bench-venv/bin/pip install ~/.cache/directclr/wheels/torch-2.11.0*.whl numpy
# ). With --record, appends the table to benches/analysis/RESULTS.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
source scripts/env.sh >/dev/null
python="${BENCH_PYTHON:-$HOME/.cache/directclr/bench-venv/bin/python}"
[[ -x "$python" ]] || { echo "files.sh: no Python at $python (see the header of this script)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "files.sh: needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 1; }
n_a="${N_A:-50000}" n_b="${N_B:-500000}" d="${D:-2048}" threads="${THREADS:-2}"
repeats="${REPEATS:-3}" streamed_b="${STREAMED_B:-1}" keep_b="${KEEP_B:-0}"
data="${DATA:-$root/out/bench-analysis}"
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"
if [[ "${BUILD:-1}" == 1 ]]; then cargo build --release -q -p directclr-cli; fi
bin="$root/target/release/directclr"
rev="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo "+changes")"
mkdir -p "$data"
work="$(mktemp -d "$data/run.XXXXXX")"
file_a="$data/embeddings-$n_a-$d.npy" file_b="$data/embeddings-$n_b-$d.npy"
cleanup() { rm -rf "$work"; if [[ "$keep_b" != 1 ]]; then rm -f "$file_b"; fi; }
trap cleanup EXIT

cat > "$work/bench.py" <<'PY'
import json, os, sys, time
import numpy as np

BLOCK = 8192


def gen(path, n, d, seed=0):
    """Seeded [n, d] float32 .npy, written by blocks of rows into an open_memmap."""
    if os.path.exists(path):
        try:
            a = np.load(path, mmap_mode="r")
            if a.shape == (n, d) and a.dtype == np.float32:
                return
        except Exception:
            pass
    rng = np.random.default_rng(seed)
    k = np.arange(1, d + 1, dtype=np.float64)
    scale = k ** -0.6
    scale[(3 * d) // 4:] *= 1e-3
    m = rng.standard_normal(d)
    m *= 0.5 * np.linalg.norm(scale) / np.linalg.norm(m)
    scale, m = scale.astype(np.float32), m.astype(np.float32)
    tmp = path + ".tmp"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, BLOCK):
        g = rng.standard_normal((min(BLOCK, n - s), d), dtype=np.float32)
        g *= scale
        g += m
        out[s:s + len(g)] = g
    out.flush()
    del out
    os.replace(tmp, path)


def blocks(path):
    """The rows of a C-order float32 .npy, BLOCK at a time, read (not mapped) into one buffer."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}[version]
        shape, fortran, dtype = read_header(f)
        assert not fortran and dtype == np.float32 and len(shape) == 2
        n, d = shape
        buf = np.empty((BLOCK, d), dtype=np.float32)
        for s in range(0, n, BLOCK):
            b = buf[:min(BLOCK, n - s)]
            f.readinto(memoryview(b).cast("B"))
            yield b


def numpy_plain(path):
    z = np.load(path).astype(np.float64)
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    z -= z.mean(axis=0)
    c = (z.T @ z) / len(z)
    return np.linalg.eigvalsh(c)[::-1]


def numpy_streamed(path):
    g = shift = s = None
    n = 0
    for b32 in blocks(path):
        b = b32.astype(np.float64)
        b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        if shift is None:
            shift = b.mean(axis=0)
            g = np.zeros((b.shape[1], b.shape[1]))
            s = np.zeros(b.shape[1])
        b -= shift
        g += b.T @ b
        s += b.sum(axis=0)
        n += len(b)
        del b
    mu = s / n
    c = g / n - np.outer(mu, mu)
    return np.linalg.eigvalsh(c)[::-1]


def torch_plain(path, threads):
    import torch
    torch.set_num_threads(threads)
    z = torch.from_numpy(np.load(path)).double()
    z = torch.nn.functional.normalize(z, dim=1)
    z -= z.mean(dim=0)
    c = (z.T @ z) / z.shape[0]
    return torch.linalg.eigvalsh(c).flip(0).numpy()


def main():
    mode = sys.argv[1]
    if mode == "gen":
        gen(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    if mode == "compare":
        # compare OUT.json NAME=EIGS ... : max |Δλ| / λ₁ for every pair.
        eig = {}
        for arg in sys.argv[3:]:
            name, p = arg.split("=", 1)
            if p.endswith(".json"):
                eig[name] = np.array(json.load(open(p))[0]["eigenvalues"])
            else:
                eig[name] = np.load(p)
        names = list(eig)
        pairs = {}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                top = max(eig[a][0], eig[b][0])
                pairs[f"{a}~{b}"] = float(np.max(np.abs(eig[a] - eig[b])) / top)
        first = eig[names[0]]
        json.dump({"pairs": pairs, "lambda1": float(first[0]),
                   "smallest_over_lambda1": float(first[-1] / first[0]), "d": len(first)},
                  open(sys.argv[2], "w"))
        return
    path, out = sys.argv[2], sys.argv[3]
    threads = int(sys.argv[4])
    t0 = time.perf_counter()
    if mode == "numpy":
        e = numpy_plain(path)
    elif mode == "numpy-streamed":
        e = numpy_streamed(path)
    elif mode == "torch":
        e = torch_plain(path, threads)
    else:
        raise SystemExit(f"unknown mode {mode}")
    t = time.perf_counter() - t0
    np.save(out, np.ascontiguousarray(e))
    print(json.dumps({"compute_seconds": t}))


if __name__ == "__main__":
    main()
PY

# timed NAME CMD...: runs CMD under /usr/bin/time -v, appends "NAME wall rss_kB compute" to
# $work/times (compute: the JSON "compute_seconds" the command printed, or - for directclr).
timed() {
  local name="$1"; shift
  /usr/bin/time -v -o "$work/time.txt" "$@" > "$work/stdout.txt" 2> "$work/stderr.txt" || {
    echo "files.sh: $name failed:" >&2; cat "$work/stderr.txt" >&2; exit 1; }
  "$python" - "$name" "$work/time.txt" "$work/stdout.txt" >> "$work/times" <<'PY'
import json, sys
name, tv, so = sys.argv[1:4]
wall = rss = None
for line in open(tv):
    line = line.strip()
    if line.startswith("Elapsed (wall clock) time"):
        parts = line.rsplit(" ", 1)[1].split(":")
        wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(parts)))
    elif line.startswith("Maximum resident set size"):
        rss = int(line.rsplit(" ", 1)[1])
compute = "-"
for line in open(so):
    if line.startswith("{"):
        compute = "%.3f" % json.loads(line)["compute_seconds"]
print(name, "%.2f" % wall, rss, compute)
PY
  tail -n 1 "$work/times" >&2
}

cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "files.sh: $cpu, $(nproc) cores; $(free -g | awk '/^Mem:/ {print $2 " GiB RAM, " $7 " GiB available"}'); directclr $rev" >&2
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# Case A.
t0=$(date +%s.%N)
"$python" "$work/bench.py" gen "$file_a" "$n_a" "$d"
echo "files.sh: case A file $(du -h "$file_a" | cut -f1) ready in $("$python" -c "print(f'{$(date +%s.%N)-$t0:.1f}')") s" >&2
for r in $(seq "$repeats"); do
  timed A-directclr "$bin" spectrum --threads "$threads" --embeddings "$file_a" --out "$work/A-directclr"
  timed A-numpy "$python" "$work/bench.py" numpy "$file_a" "$work/A-numpy.npy" "$threads"
  timed A-torch "$python" "$work/bench.py" torch "$file_a" "$work/A-torch.npy" "$threads"
  timed A-numpy-streamed "$python" "$work/bench.py" numpy-streamed "$file_a" "$work/A-numpy-streamed.npy" "$threads"
done
"$python" "$work/bench.py" compare "$work/A-compare.json" numpy="$work/A-numpy.npy" \
  torch="$work/A-torch.npy" directclr="$work/A-directclr/metrics.json" \
  numpy-streamed="$work/A-numpy-streamed.npy"
load_mid=$(cut -d' ' -f1-3 /proc/loadavg)

# Case B.
if [[ "$n_b" -gt 0 ]]; then
  need_kb=$((n_b * d * 4 / 1024 + 1024))
  avail_kb=$(df -Pk "$data" | awk 'NR==2 {print $4}')
  [[ "$avail_kb" -gt "$need_kb" ]] || { echo "files.sh: $((need_kb / 1048576)) GiB needed in $data, $((avail_kb / 1048576)) GiB free" >&2; exit 1; }
  t0=$(date +%s.%N)
  "$python" "$work/bench.py" gen "$file_b" "$n_b" "$d"
  echo "files.sh: case B file $(du -h "$file_b" | cut -f1) ready in $("$python" -c "print(f'{$(date +%s.%N)-$t0:.1f}')") s; $(free -g | awk '/^Mem:/ {print $7 " GiB available"}')" >&2
  load_b=$(cut -d' ' -f1-3 /proc/loadavg)
  timed B-directclr "$bin" spectrum --threads "$threads" --embeddings "$file_b" --out "$work/B-directclr"
  if [[ "$streamed_b" == 1 ]]; then
    timed B-numpy-streamed "$python" "$work/bench.py" numpy-streamed "$file_b" "$work/B-numpy-streamed.npy" "$threads"
    "$python" "$work/bench.py" compare "$work/B-compare.json" directclr="$work/B-directclr/metrics.json" \
      numpy-streamed="$work/B-numpy-streamed.npy"
  fi
  if [[ "$keep_b" != 1 ]]; then rm -f "$file_b"; fi
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# The table.
table=$("$python" - "$work" "$n_a" "$n_b" "$d" "$threads" "$repeats" <<'PY'
import json, os, sys
work, n_a, n_b, d, threads, repeats = sys.argv[1], *map(int, sys.argv[2:])
runs = {}
for line in open(os.path.join(work, "times")):
    name, wall, rss, compute = line.split()
    runs.setdefault(name, []).append((float(wall), int(rss), None if compute == "-" else float(compute)))
mb = lambda n: n * d * 4 / 1e6
def row(name, label, size):
    rs = runs[name]
    wall = min(r[0] for r in rs)
    comp = [r[2] for r in rs if r[2] is not None]
    rss = max(r[1] for r in rs) / 1024
    walls = " / ".join("%.2f" % r[0] for r in rs)
    every = f" ({walls})" if len(rs) > 1 else ""
    comp_s = f"{min(comp):.2f}" if comp else "–"
    return f"| {label} | {wall:.2f}{every} | {comp_s} | {rss:,.0f} | {rss / size:.2f} |"
print(f"| case, tool | wall s (every run) | compute s | peak RSS MiB | RSS / file size |")
print(f"|---|---|---|---|---|")
size_a = mb(n_a) / 1.048576
for name, label in [("A-directclr", "directclr spectrum"), ("A-numpy", "numpy f64 (load, astype)"),
                    ("A-torch", "PyTorch f64 (load, .double())"), ("A-numpy-streamed", "numpy f64 streamed")]:
    print(row(name, f"A {n_a:,} × {d}, {label}", size_a))
if n_b:
    size_b = mb(n_b) / 1.048576
    for name, label in [("B-directclr", "directclr spectrum"), ("B-numpy-streamed", "numpy f64 streamed")]:
        if name in runs:
            print(row(name, f"B {n_b:,} × {d}, {label}", size_b))
print()
ca = json.load(open(os.path.join(work, "A-compare.json")))
print(f"Eigenvalue agreement, max |λ_i − λ'_i| / λ₁ over all {ca['d']} (case A, λ₁ = {ca['lambda1']:.4g}, "
      f"λ_min/λ₁ = {ca['smallest_over_lambda1']:.1e}): " +
      ", ".join(f"{k.replace('~', ' vs ')} {v:.1e}" for k, v in ca["pairs"].items()))
pb = os.path.join(work, "B-compare.json")
if os.path.exists(pb):
    cb = json.load(open(pb))
    print(f"Case B (λ₁ = {cb['lambda1']:.4g}): " +
          ", ".join(f"{k.replace('~', ' vs ')} {v:.1e}" for k, v in cb["pairs"].items()))
PY
)
torch_version=$("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null)
numpy_version=$("$python" -c 'import numpy; print(numpy.__version__)')
table="Spectrum of .npy embeddings (f32; L2 rows, covariance / N, all eigenvalues), $threads threads each; case A best of $repeats alternating runs, case B once
$(date -u +%Y-%m-%d), $cpu, $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, no swap; load average $load_before → $load_mid (after A)${load_b:+ → $load_b (before B)} → $load_after; numpy $numpy_version (OpenBLAS), PyTorch $torch_version; directclr $rev, libtorch $(basename "$(dirname "$LIBTORCH")" | sed 's/libtorch-//')

$table"
echo "$table"
if [[ "${1:-}" == "--record" ]]; then
  printf '\n%s\n' "$table" >> benches/analysis/RESULTS.md
fi
