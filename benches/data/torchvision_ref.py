"""The authors' two-view recipe in torchvision/PIL, one core: the reference side of the data
pipeline benchmark (run by run.sh next to ours).

The transforms are those of facebookresearch/directclr `main.py` (BYOL-style asymmetric views):
RandomResizedCrop(size, bicubic), flip 0.5, ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8, grayscale
p 0.2, their PIL GaussianBlur (radius σ ∈ [0.1, 2.0]) p 1.0 / 0.1, their PIL Solarization p 0.0 /
0.2, ToTensor, ImageNet Normalize.

Usage: python torchvision_ref.py JPEG N
Prints `torchvision <size>px <transforms|collated> workers=1 <images/s wall> <images per
CPU-second>` lines: the transforms alone, and followed by DataLoader's collation (torch.stack of
64 images per view), which is what a loader hands to a training loop.
"""
import random
import sys
import time

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image, ImageFilter, ImageOps


class GaussianBlur:
    """The authors' blur: PIL's filter with a random radius."""

    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        if random.random() < self.p:
            sigma = random.random() * 1.9 + 0.1
            return img.filter(ImageFilter.GaussianBlur(sigma))
        return img


class Solarization:
    """The authors' solarisation: PIL's ImageOps.solarize (threshold 128)."""

    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        if random.random() < self.p:
            return ImageOps.solarize(img)
        return img


def view(size, blur_p, solarize_p):
    return T.Compose([
        T.RandomResizedCrop(size, interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(p=0.5),
        T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        GaussianBlur(p=blur_p),
        Solarization(p=solarize_p),
        T.ToTensor(),
        T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])


def two_views(size):
    v1, v2 = view(size, 1.0, 0.0), view(size, 0.1, 0.2)
    return lambda img: (v1(img), v2(img))


def rate(fn, items):
    """Images per second of wall time and per CPU-second of the process."""
    for it in items[:8]:  # warm-up
        fn(it)
    t, c = time.perf_counter(), time.process_time()
    for it in items:
        fn(it)
    return len(items) / (time.perf_counter() - t), len(items) / (time.process_time() - c)


def batched(fn, batch=64):
    """The transforms plus DataLoader's default collation (torch.stack into batches of 64)."""
    pending = []

    def run(item):
        pending.append(fn(item))
        if len(pending) == batch:
            torch.stack([v[0] for v in pending])
            torch.stack([v[1] for v in pending])
            pending.clear()

    return run


def main():
    jpeg, n = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    random.seed(0)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    small = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n * 4)]
    t32 = two_views(32)
    t224 = two_views(224)
    load = lambda p: t224(Image.open(p).convert("RGB"))  # noqa: E731
    for name, f32, f224 in [("transforms", t32, load), ("collated", batched(t32), batched(load))]:
        print(f"torchvision 32px {name} workers=1 %.0f %.0f" % rate(f32, small), flush=True)
        print(f"torchvision 224px {name} workers=1 %.0f %.0f" % rate(f224, [jpeg] * n), flush=True)

if __name__ == "__main__":
    main()
