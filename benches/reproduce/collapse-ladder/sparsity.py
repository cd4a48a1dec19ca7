#!/usr/bin/env python3
"""How sparse is r, and why do its channels die? The collapse ladder's runs under OUT (run.sh),
read back: per rung × condition × head (means over the seeds found),

- zeros: the share of the entries of r (the encoder's pooled output, after its last ReLU) that
  are exactly 0 over the first 2,000 test images;
- cosine: the mean cosine similarity between r of two different test images (images 0–999
  against 1000–1999); r ≥ 0 after a ReLU, so every cosine is ≥ 0 and only disjoint supports
  (sparsity) can bring it to 0; the controls without the final ReLU (`*_signed_r`) have r of
  either sign, whose cosines can be negative;
- dead: coordinates of r whose variance over those images is below 1e-6 of the largest covariance
  eigenvalue, rows L2-normalised (as `directclr spectrum`'s constant coordinates), summed over
  seeds;
- for encoders ending in a residual or plain block with batch norm (cnn, residual_cnn*,
  resnet18), that last BN's shift β (median over the channels) and β/|γ| — its shift in units of
  its scale — for the dead channels and for the live ones (medians over all seeds' channels).

The embeddings come from `directclr spectrum --save-embeddings` (run once per run folder, kept as
r-test.npy beside its encoder); the BN parameters from the run's encoder.safetensors, read as
plain bytes (a JSON header and little-endian f32 arrays; no code runs).

Needs numpy (the benchmarks' venv: BENCH_PYTHON or ~/.cache/directclr/bench-venv/bin/python).
Usage: sparsity.py OUT [RUNG...]     (default rungs: conv cnn residual_cnn_gamma1 residual_cnn
resnet18, the ones whose r is a pooled ReLU output, and the controls cnn_signed_r
residual_cnn_signed_r, whose r is not rectified)
"""

import json
import os
import re
import struct
import subprocess
import sys

import numpy as np

CONDITIONS = ["authors", "strong", "weak"]
HEADS = ["no-projector", "linear-projector", "directclr"]
# Headers of our own files are a few KB; anything past this is not a run's encoder.
MAX_HEADER = 16 << 20


def read_safetensors_f32(path):
    """The F32 tensors of a safetensors file, by name, each bounds-checked against the file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: shorter than a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER or 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} does not fit the file ({len(data)} bytes)")
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info.get("dtype") != "F32":
            continue
        a, b = info["data_offsets"]
        count = int(np.prod(info["shape"])) if info["shape"] else 1
        if not (0 <= a <= b <= len(data) - 8 - n) or b - a != 4 * count:
            raise ValueError(f"{path}: tensor {name} has offsets {a}..{b} for shape {info['shape']}")
        out[name] = np.frombuffer(data[8 + n + a:8 + n + b], dtype="<f4").reshape(info["shape"])
    return out


def last_bn(weights):
    """The batch norm whose output (plus a shortcut) meets r's ReLU: the last block's bn2."""
    blocks = sorted({(int(m.group(1)), int(m.group(2)))
                     for k in weights for m in [re.match(r"layer(\d+)\.(\d+)\.bn2\.weight$", k)] if m})
    if not blocks:
        return None
    s, b = blocks[-1]
    return weights[f"layer{s}.{b}.bn2.weight"], weights[f"layer{s}.{b}.bn2.bias"]


def embeddings(binary, run):
    path = os.path.join(run, "r-test.npy")
    if not os.path.exists(path):
        subprocess.run([binary, "--threads", "2", "spectrum", "--run", run, "--split", "test",
                        "--limit", "2000", "--save-embeddings", path, "--out",
                        os.path.join(run, "spectrum-test")],
                       check=True, stdout=subprocess.DEVNULL)
    return np.load(path).astype(np.float64)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    rungs = sys.argv[2:] or ["conv", "cnn", "residual_cnn_gamma1", "residual_cnn", "resnet18",
                             "cnn_signed_r", "residual_cnn_signed_r"]
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    binary = os.path.join(root, "target", "release", "directclr")
    print("| rung | condition | head | seeds | zeros in r | cosine between images | dead "
          "coordinates | last BN β (median) | β/|γ| dead | β/|γ| live |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for rung in rungs:
        for cond in CONDITIONS:
            for head in HEADS:
                zeros, cosines, dead_total, betas, ratio_dead, ratio_live, seeds = [], [], 0, [], [], [], 0
                for seed in range(10):
                    run = os.path.join(out, f"{rung}-{cond}", "runs", f"{head}.seed{seed}")
                    if not os.path.isdir(run):
                        continue
                    seeds += 1
                    r = embeddings(binary, run)
                    zeros.append(float((r == 0).mean()))
                    u = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
                    half = len(u) // 2
                    cosines.append(float((u[:half] @ u[half:2 * half].T).mean()))
                    lam1 = np.linalg.eigvalsh(np.cov(u.T)).max()
                    dead = u.var(axis=0) < 1e-6 * lam1
                    dead_total += int(dead.sum())
                    bn = last_bn(read_safetensors_f32(os.path.join(run, "encoder.safetensors")))
                    if bn is not None:
                        gamma, beta = bn
                        ratio = beta / np.maximum(np.abs(gamma), 1e-12)
                        betas += list(beta)
                        ratio_dead += list(ratio[dead])
                        ratio_live += list(ratio[~dead])
                if not seeds:
                    continue
                med = lambda xs, fmt: fmt.format(float(np.median(xs))) if xs else "–"
                print(f"| {rung} | {cond} | {head} | {seeds} | {100 * np.mean(zeros):.1f} % | "
                      f"{np.mean(cosines):.3f} | {dead_total} | {med(betas, '{:+.2f}')} | "
                      f"{med(ratio_dead, '{:+.1f}')} | {med(ratio_live, '{:+.2f}')} |")


if __name__ == "__main__":
    main()
