"""The pretraining step of examples/train_step_bench.rs in PyTorch: torchvision ResNet-18 with
the CIFAR stem (3x3 conv, no max-pool, fc removed, zero_init_residual), the SimCLR projector
Linear(512, 512, bias=False) BN ReLU Linear(512, 128, bias=False) BN, the authors' InfoNCE
(normalised, cross-view, symmetric, tau 0.1) and the authors' LARS (eta 0.001, momentum 0.9,
wd 1e-6, 1-d parameters excluded), on two random views of 32x32 images. Prints one JSON line."""
import argparse, json, os, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_reference import LARS, info_nce  # noqa: E402
import torchvision

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, default=128)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

net = torchvision.models.resnet18(zero_init_residual=True)
net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
net.maxpool = nn.Identity()
net.fc = nn.Identity()
head = nn.Sequential(nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(True),
                     nn.Linear(512, 128, bias=False), nn.BatchNorm1d(128))
params = list(net.parameters()) + list(head.parameters())


opt = LARS(params, lr=0.3)


x1 = torch.randn(a.batch, 3, 32, 32)
x2 = torch.randn(a.batch, 3, 32, 32)
losses = []
for step in range(a.warmup + a.steps):
    if step == a.warmup:
        start = time.perf_counter()
    loss = info_nce(head(net(x1)), head(net(x2)))
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
seconds = time.perf_counter() - start
print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "batch": a.batch, "steps": a.steps, "seconds": seconds,
                  "view_images_per_s": 2 * a.batch * a.steps / seconds, "threads": torch.get_num_threads(),
                  "first_losses": losses[:3]}))
