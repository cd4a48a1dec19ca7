"""Reference timings of the spectrum of the paper's figures (L2-normalised rows, covariance of
Eqn 1, eigenvalues in descending order) with numpy f64 and PyTorch f64, on the same data as
directclr's `analysis_spectrum` example.

    python reference_spectrum.py --data DIR [--n 50000 --d 2048 --repeats 3]

Writes (once) DIR/embeddings-N-D.f32, raw little-endian float32 [N, D] row-major; writes
DIR/numpy-eigenvalues-N-D.f64 (raw float64, descending) and prints one JSON line with the best
times and PyTorch's agreement with numpy.

The data are embedding-like and seeded: Gaussian rows shaped to a power-law spectrum
(sigma_k = k^-0.6) in 3/4 of the dimensions and a near-collapsed remainder (1e-4 of it),
rotated by a random orthogonal matrix and offset by a common mean of norm 0.5 per unit scale.
"""
import argparse
import json
import os
import time

import numpy as np
import torch


def make_data(n, d, seed):
    rng = np.random.default_rng(seed)
    k = np.arange(1, d + 1, dtype=np.float64)
    scale = k ** -0.6
    scale[(3 * d) // 4:] *= 1e-4
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    mean = rng.standard_normal(d)
    mean *= 0.5 * np.sqrt((scale**2).sum()) / np.linalg.norm(mean)
    rot = (scale[:, None] * q.T).astype(np.float32)  # [d, d]: row k is scale_k * q_k
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 4096):
        g = rng.standard_normal((min(4096, n - s), d)).astype(np.float32)
        out[s:s + len(g)] = g @ rot + mean.astype(np.float32)
    return out


def spectrum_numpy(z32):
    z = z32.astype(np.float64)
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    c = np.cov(z, rowvar=False, bias=True)
    return np.linalg.eigvalsh(c)[::-1]


def spectrum_torch(z32):
    z = torch.from_numpy(z32).double()
    z = torch.nn.functional.normalize(z, dim=1)
    c = torch.cov(z.T, correction=0)
    return torch.linalg.eigvalsh(c).flip(0)


def best_of(repeats, f, *args):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--d", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    os.makedirs(a.data, exist_ok=True)
    path = os.path.join(a.data, f"embeddings-{a.n}-{a.d}.f32")
    if not os.path.exists(path):
        make_data(a.n, a.d, a.seed).tofile(path + ".tmp")
        os.replace(path + ".tmp", path)
    z32 = np.fromfile(path, dtype=np.float32).reshape(a.n, a.d)

    t_np, e_np = best_of(a.repeats, spectrum_numpy, z32)
    t_pt, e_pt = best_of(a.repeats, spectrum_torch, z32)
    e_np = np.ascontiguousarray(e_np)
    e_np.tofile(os.path.join(a.data, f"numpy-eigenvalues-{a.n}-{a.d}.f64"))
    e_pt = e_pt.numpy()
    top = e_np[0]
    meaningful = e_np > 1e-10 * top
    print(json.dumps({
        "numpy_seconds": t_np,
        "torch_seconds": t_pt,
        "torch_max_rel_diff": float(np.max(np.abs(e_pt - e_np)[meaningful] / e_np[meaningful])),
        "torch_max_abs_diff_over_top": float(np.max(np.abs(e_pt - e_np)) / top),
        "smallest_over_top": float(e_np[-1] / top),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
