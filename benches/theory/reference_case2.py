"""The authors' toy setting of Section 5 (case 2: two linear 16x16 layers without bias, singular
values e^(-0.35k) at init, isotropic noise 0.001, InfoNCE tau 0.1 on un-normalised z, plain SGD
lr 0.01, 10,000 steps, batch 128 from 10,000 fixed N(0, I) samples) in PyTorch, on the CPU, with
one thread: the reference that benches/theory/run.sh times against `directclr theory implicit`.

--measure reproduces the authors' logging every 10 steps (singular values of W1 and W2, and the
embedding spectrum of 1,000 fresh samples through np.cov and SVD); without it only the training
loop is timed. Prints one JSON line.
"""
import argparse, json, time

import numpy as np
import torch

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=10_000)
p.add_argument("--measure", action="store_true")
p.add_argument("--layers", type=int, default=2)
args = p.parse_args()

torch.set_num_threads(1)
torch.manual_seed(0)
rng = np.random.default_rng(0)


def init():
    u, _, vt = np.linalg.svd(rng.standard_normal((16, 16)))
    return torch.tensor(u @ np.diag(np.exp(-0.35 * np.arange(16))) @ vt, dtype=torch.float32)


layers = [torch.nn.Linear(16, 16, bias=False) for _ in range(args.layers)]
for layer in layers:
    layer.weight.data = init()
net = torch.nn.Sequential(*layers)
x = torch.randn(10_000, 16)
opt = torch.optim.SGD(net.parameters(), lr=0.01, weight_decay=0)
labels = torch.arange(128)


def info_nce(z1, z2, temperature=0.1):
    return torch.nn.functional.cross_entropy(z1 @ z2.T / temperature, labels)


def measure():
    ws = [layer.weight.detach().numpy() for layer in layers]
    svs = [np.linalg.svd(w) for w in ws]
    z = net(torch.randn(1000, 16)).detach().numpy()
    np.linalg.svd(np.cov(z.T))
    return svs


start = time.perf_counter()
for i in range(args.steps):
    idx = torch.from_numpy(rng.choice(10_000, 128, replace=False))
    xi = x[idx]
    x1 = xi + torch.randn_like(xi) * 0.001
    x2 = xi + torch.randn_like(xi) * 0.001
    loss = info_nce(net(x1), net(x2))
    opt.zero_grad()
    loss.backward()
    opt.step()
    if args.measure and i % 10 == 0:
        with torch.no_grad():
            measure()
elapsed = time.perf_counter() - start
print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "steps": args.steps, "measure": args.measure,
                  "seconds": elapsed, "final_loss": loss.item()}))
