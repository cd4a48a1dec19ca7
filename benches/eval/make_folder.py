"""Writes the benchmark's image folder and encoders: python make_folder.py DIR N

DIR/images/: N JPEGs of 500×375 (ImageNet's most common size; smooth gradients, edges and noise,
quality 90, each image seeded by its index), flat.
DIR/resnet18.pt, DIR/resnet50.pt: torchvision's ResNet-18/50 state dicts (seeded random
weights with BN running statistics from a few forward passes, so the features are not those
of an untouched initialisation), written by torch.save.
"""
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image

out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.join(out, "images"), exist_ok=True)
y, x = np.mgrid[0:375, 0:500]
for i in range(n):
    path = os.path.join(out, "images", f"img{i:05d}.jpg")
    if os.path.exists(path):
        continue
    rng = np.random.default_rng(i)
    f = rng.uniform(5, 40, 3)
    img = np.stack(
        [
            x * rng.uniform(0.2, 0.6) + 60 * np.sin(y / f[0]),
            y * rng.uniform(0.2, 0.7) + 50 * np.cos(x / f[1]),
            (x + y) * 0.2 + 40 * np.sin((x - y) / f[2]),
        ],
        -1,
    )
    img = img + rng.normal(0, 10, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)

for arch in ["resnet18", "resnet50"]:
    path = os.path.join(out, f"{arch}.pt")
    if os.path.exists(path):
        continue
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 224, 224))
    torch.save(model.state_dict(), path)
