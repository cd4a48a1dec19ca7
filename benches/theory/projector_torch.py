"""One configuration of `directclr theory projector` (Section 6) in PyTorch eager, on the CPU,
with one thread: the reference that benches/theory/projector.sh times side by side with the lab.

The case is the lab's, setting for setting (crates/directclr/src/theory/config.rs, projector.rs):
- data: 10,000 fixed samples x ~ N(0, I_16); batches of 128 drawn without replacement; two views
  x + eps, x + eps' with Gaussian eps;
- encoder: L square layers without bias, r = W_L ... W_1 x; head: none (z = r) or a trainable
  linear projector z = W_p r, initialised as the encoder;
- mechanism `implicit-regularization` (Section 5 preset): L = 2, W = U diag(e^(-0.35k)) V^T with
  Haar-random U, V, noise 0.001 on every coordinate, lr 1e-2, the authors' dot-product InfoNCE
  cross_entropy(z1 @ z2.T / tau, arange(N));
- mechanism `strong-augmentation` (Section 4 preset): L = 1, W ~ U(-1/sqrt(d), 1/sqrt(d)) (PyTorch's
  nn.Linear default), noise 1.5 on the last 8 coordinates, lr 1e-3, the paper's Eqn 2: logits
  -|z_i - z_j|^2 / (2 tau) over the other anchors of view 1 and -|z_i - z'_i|^2 / (2 tau) for the
  positive;
- tau 0.1, plain SGD (no momentum, no weight decay), 10,000 steps, float32;
- every --log-every steps (10) the lab's measurements on 1,000 fresh samples: the covariance
  spectrum of r and of z, the singular values of r (from the eigenvalues of r^T r), the SVD of
  each layer and, for L >= 2, V_2^T U_1 of adjacent layers.

The summary follows projector.rs: the final loss is the mean batch loss over the last 10% of the
measurements, the effective rank is RankMe (epsilon 1e-7) of r's singular values, collapsed counts
are eigenvalues of cov(r) below 1e-2 / 1e-4 of the largest. The random streams differ from the
lab's (torch and numpy generators, not ChaCha8), so one seed's numbers differ run to run between
the two; projector.sh compares means over seeds. The clock covers data, initialisation, training
and measurements (as the lab's `train_seconds`), not `import torch`. Prints one JSON line.
"""
import argparse
import json
import math
import time

import numpy as np
import torch

PRESETS = {
    "implicit-regularization": dict(layers=2, init="spectral", noise=0.001, noisy_dims=16, lr=1e-2, loss="dot"),
    "strong-augmentation": dict(layers=1, init="uniform", noise=1.5, noisy_dims=8, lr=1e-3, loss="distance"),
}
DIM, SAMPLES, BATCH, EVAL_SAMPLES, TAU = 16, 10_000, 128, 1_000, 0.1
RANKME_EPSILON = 1e-7
FINAL_LOSS_WINDOW = 0.1

p = argparse.ArgumentParser()
p.add_argument("--mechanism", choices=sorted(PRESETS), default="implicit-regularization")
p.add_argument("--head", choices=["none", "linear"], default="linear")
p.add_argument("--steps", type=int, default=10_000)
p.add_argument("--log-every", type=int, default=10)
p.add_argument("--seed", type=int, default=0)
args = p.parse_args()
cfg = PRESETS[args.mechanism]

torch.set_num_threads(1)
torch.manual_seed(args.seed)
rng = np.random.default_rng(args.seed)


def haar(d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def init_weight():
    if cfg["init"] == "uniform":
        bound = 1.0 / math.sqrt(DIM)
        return torch.empty(DIM, DIM).uniform_(-bound, bound)
    w = haar(DIM) @ np.diag(np.exp(-0.35 * np.arange(DIM))) @ haar(DIM).T
    return torch.tensor(w, dtype=torch.float32)


def info_nce(z1, z2, labels):
    if cfg["loss"] == "dot":
        return torch.nn.functional.cross_entropy(z1 @ z2.T / TAU, labels)
    sq = (z1 * z1).sum(1)
    logits = -(sq[:, None] + sq[None, :] - 2.0 * z1 @ z1.T) / (2 * TAU)
    positive = -((z1 - z2) ** 2).sum(1) / (2 * TAU)
    logits = torch.where(torch.eye(len(z1), dtype=torch.bool), positive[:, None], logits)
    return torch.nn.functional.cross_entropy(logits, labels)


def covariance_eigenvalues(z):
    z = z - z.mean(0)
    return torch.linalg.eigvalsh(z.T @ z / len(z)).flip(0)


def measure(layers, head):
    """The lab's measurement (trainer.rs, Trainer::measure), in float64 like the lab's."""
    with torch.no_grad():
        fresh = torch.randn(EVAL_SAMPLES, DIM)
        r = fresh
        for w in layers:
            r = r @ w.T
        z = r @ head.T if head is not None else None
        r = r.double()
        r_spectrum = covariance_eigenvalues(r)
        if z is not None:
            covariance_eigenvalues(z.double())
        r_singular = torch.linalg.eigvalsh(r.T @ r).flip(0).clamp(min=0).sqrt()
        svds = [torch.linalg.svd(w.double()) for w in layers]
        for (u1, _, _), (_, _, v2t) in zip(svds, svds[1:]):
            v2t @ u1  # A = V_{l+1}^T U_l
    return r_spectrum.tolist(), r_singular.tolist()


def effective_rank(singular):
    total = sum(singular)
    return math.exp(-sum((s / total + RANKME_EPSILON) * math.log(s / total + RANKME_EPSILON) for s in singular))


def collapsed(spectrum, relative):
    return sum(1 for v in spectrum if v / spectrum[0] < relative)


start = time.perf_counter()
x = torch.randn(SAMPLES, DIM)
layers = [init_weight().requires_grad_() for _ in range(cfg["layers"])]
head = init_weight().requires_grad_() if args.head == "linear" else None
params = layers + ([head] if head is not None else [])
opt = torch.optim.SGD(params, lr=cfg["lr"], momentum=0.0, weight_decay=0.0)
labels = torch.arange(BATCH)
first_noisy = DIM - cfg["noisy_dims"]


def view(xi):
    v = xi.clone()
    v[:, first_noisy:] += cfg["noise"] * torch.randn(len(xi), cfg["noisy_dims"])
    return v


def encode(v):
    for w in layers:
        v = v @ w.T
    return v @ head.T if head is not None else v


r_spectrum, r_singular = measure(layers, head)
rank_start = effective_rank(r_singular)
losses = []
for step in range(1, args.steps + 1):
    xi = x[torch.from_numpy(rng.choice(SAMPLES, BATCH, replace=False))]
    loss = info_nce(encode(view(xi)), encode(view(xi)), labels)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % args.log_every == 0 or step == args.steps:
        losses.append(loss.item())
        r_spectrum, r_singular = measure(layers, head)
elapsed = time.perf_counter() - start
window = max(1, math.ceil(len(losses) * FINAL_LOSS_WINDOW))
print(json.dumps({
    "impl": "pytorch", "torch": torch.__version__, "mechanism": args.mechanism, "head": args.head,
    "seed": args.seed, "steps": args.steps, "log_every": args.log_every, "seconds": elapsed,
    "initial_loss": losses[0], "final_loss": sum(losses[-window:]) / window,
    "r_effective_rank": [rank_start, effective_rank(r_singular)],
    "r_collapsed_1e-2_end": collapsed(r_spectrum, 1e-2), "r_collapsed_1e-4_end": collapsed(r_spectrum, 1e-4),
    "r_spectrum": r_spectrum,
}))
