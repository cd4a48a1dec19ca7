"""Writes the benchmark's 400×350 JPEG (smooth gradients plus noise, quality 90): python make_jpeg.py OUT"""
import sys

import numpy as np
from PIL import Image

rng = np.random.default_rng(0)
y, x = np.mgrid[0:350, 0:400]
img = np.stack([x * 0.6 + 30 * np.sin(y / 17.0), y * 0.7 + 40 * np.cos(x / 23.0), (x + y) * 0.3], -1)
img = img + rng.normal(0, 12, img.shape)
Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(sys.argv[1], quality=90)
