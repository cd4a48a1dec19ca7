"""Compares two feature matrices of the same images: python compare.py OURS.npy THEIRS.npy

Prints one JSON line: the largest absolute difference relative to the largest |r|, the
median cosine similarity of matching rows, and both spectra's effective ranks (L2-normalised
rows, as `directclr spectrum`).
"""
import json
import sys

import numpy as np

a, b = (np.load(p).astype(np.float64) for p in sys.argv[1:3])
assert a.shape == b.shape, (a.shape, b.shape)
cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def erank(x):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    x = x - x.mean(0)
    s = np.linalg.eigvalsh(x.T @ x / len(x))[::-1].clip(min=0)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


print(json.dumps({
    "max_abs_diff_rel": float(np.abs(a - b).max() / np.abs(b).max()),
    "median_cosine": float(np.median(cos)),
    "min_cosine": float(cos.min()),
    "erank_ours": erank(a),
    "erank_torch": erank(b),
}))
