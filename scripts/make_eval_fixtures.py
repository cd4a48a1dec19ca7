"""Writes crates/directclr/tests/fixtures/eval_images/: small test images and torchvision's
evaluation transform of each, the reference of tests/data_eval_transform.rs.

    python scripts/make_eval_fixtures.py            # writes the images, then the references
    python scripts/make_eval_fixtures.py --refs     # keeps the images, rewrites the references

The images are drawn from a seeded generator (smooth colour fields, hard-edged shapes, a zone
plate and a one-pixel checkerboard that alias without an antialiasing filter, and noise), then
saved by Pillow: a 4:2:0 JPEG in ImageNet's most common size, a grayscale, a progressive and a
CMYK JPEG, an RGB, a grayscale, an RGBA, a grayscale + alpha and a palette PNG, and an RGB PNG
smaller than 256 (upscaled).

For each image, `NAME.tv.npy.gz` (a gzipped .npy) holds torchvision's path as `ImageFolder` runs it:
`Image.open(f).convert("RGB")` (`pil_loader`), `Resize(256)`, `CenterCrop(224)`, before
`ToTensor()`: a uint8 `[224, 224, 3]` array, exactly Pillow's resampled pixels (`ToTensor` only
divides them by 255, `Normalize` is checked in closed form by the test). `manifest.json`
records the versions of torch, torchvision, Pillow and libjpeg-turbo that made them.
"""
import argparse
import gzip
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, features
import torch
import torchvision
from torchvision import transforms

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/directclr/tests/fixtures/eval_images"
RESIZE, CROP = 256, 224

# name, (height, width), Pillow mode, file format, seed, noise (standard deviation, levels).
IMAGES = [
    ("landscape.jpg", (375, 500), "RGB", "JPEG", 1, 6.0),
    ("gray.jpg", (350, 280), "L", "JPEG", 2, 6.0),
    ("portrait.png", (451, 300), "RGB", "PNG", 3, 0.0),
    ("gray.png", (257, 333), "L", "PNG", 4, 0.0),
    ("rgba.png", (280, 320), "RGBA", "PNG", 5, 0.0),
    ("palette.png", (300, 257), "P", "PNG", 6, 0.0),
    ("small.png", (100, 150), "RGB", "PNG", 7, 0.0),
    ("progressive.jpg", (300, 400), "RGB", "JPEG-progressive", 8, 0.0),
    ("cmyk.jpg", (180, 200), "CMYK", "JPEG", 9, 0.0),
    ("gray_alpha.png", (270, 260), "LA", "PNG", 10, 0.0),
]


def scene(h, w, seed, noise):
    """A seeded RGB scene, float in [0, 255], `[h, w, 3]`."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        for _ in range(3):
            fy, fx = rng.uniform(0.5, 3.0, 2) * np.pi / np.array([h, w])
            ph = rng.uniform(0, 2 * np.pi)
            img[..., c] += 40 * np.cos(fy * y + fx * x + ph)
        img[..., c] += rng.uniform(90, 160)
    # Hard-edged shapes: rectangles and discs of random colours.
    for _ in range(6):
        col = rng.uniform(0, 255, 3)
        if rng.uniform() < 0.5:
            y0, x0 = rng.integers(0, h - 10), rng.integers(0, w - 10)
            y1, x1 = y0 + rng.integers(5, h // 3), x0 + rng.integers(5, w // 3)
            img[y0:y1, x0:x1] = col
        else:
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, min(h, w) / 5)
            img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = col
    # A zone plate (every frequency up to Nyquist) in one corner, a one-pixel checkerboard
    # in another: both alias badly when downscaled without an antialiasing filter.
    s = min(h, w) // 3
    zy, zx = np.mgrid[0:s, 0:s].astype(np.float64)
    zone = 127.5 + 127.5 * np.cos(np.pi * ((zy - s / 2) ** 2 + (zx - s / 2) ** 2) / s)
    img[h - s:, :s] = zone[..., None]
    img[:s // 2, w - s // 2:] = 255.0 * ((np.indices((s // 2, s // 2)).sum(0) % 2)[..., None])
    # Thin diagonal lines.
    for k in range(0, w, 37):
        img[np.abs((x - k) - 0.7 * y) < 0.8] = 255.0
    img += rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255)


def make_image(name, hw, mode, fmt, seed, noise):
    h, w = hw
    rgb = np.round(scene(h, w, seed, noise)).astype(np.uint8)
    im = Image.fromarray(rgb, "RGB")
    if mode == "L":
        im = im.convert("L")
    elif mode == "RGBA":
        rng = np.random.default_rng(seed + 100)
        yy, xx = np.mgrid[0:h, 0:w]
        alpha = (255 * (0.5 + 0.5 * np.cos(xx / w * 5 + yy / h * 3))).astype(np.uint8)
        alpha[rng.uniform(size=(h, w)) < 0.05] = 0  # fully transparent pixels keep their RGB
        im = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    elif mode == "LA":
        yy, xx = np.mgrid[0:h, 0:w]
        alpha = (255 * (0.5 + 0.5 * np.sin(xx / w * 4 - yy / h * 2))).astype(np.uint8)
        im = Image.fromarray(np.dstack([np.asarray(im.convert("L")), alpha]), "LA")
    elif mode == "CMYK":
        im = im.convert("CMYK")
    elif mode == "P":
        im = im.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path = OUT / name
    if fmt.startswith("JPEG"):
        # quality 90, 4:2:0 chroma subsampling (Pillow's default), as most ImageNet files.
        im.save(path, "JPEG", quality=90, subsampling="4:2:0" if mode == "RGB" else 0,
                progressive=fmt == "JPEG-progressive")
    else:
        im.save(path, "PNG", optimize=True)


def tv_reference(path):
    """torchvision's ImageFolder path up to (not including) ToTensor: uint8 [224, 224, 3]."""
    with open(path, "rb") as f:
        img = Image.open(f).convert("RGB")  # torchvision.datasets.folder.pil_loader
    t = transforms.Compose([transforms.Resize(RESIZE), transforms.CenterCrop(CROP)])
    out = np.asarray(t(img), dtype=np.uint8)
    assert out.shape == (CROP, CROP, 3), out.shape
    # ToTensor would give out.transpose(2, 0, 1) / 255 exactly; checked here once.
    full = transforms.Compose([transforms.Resize(RESIZE), transforms.CenterCrop(CROP),
                               transforms.ToTensor()])(img)
    assert torch.equal(full, torch.from_numpy(out.transpose(2, 0, 1).copy()).float() / 255)
    return out


def write_reference(path, ref):
    """`ref` as a gzipped .npy (no time stamp in the header: the same bytes on every run)."""
    buf = io.BytesIO()
    np.save(buf, ref)
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as g:
        g.write(buf.getvalue())


def read_reference(path):
    with gzip.open(path, "rb") as g:
        return np.load(io.BytesIO(g.read()))


def versions():
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--refs", action="store_true", help="keep the images, rewrite the references")
    a = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, *spec in IMAGES:
        if not a.refs:
            make_image(name, *spec)
        path = OUT / name
        ref = tv_reference(path)
        write_reference(OUT / f"{name}.tv.npy.gz", ref)
        with Image.open(path) as im:
            entries.append({"file": name, "mode": im.mode, "width": im.width,
                            "height": im.height, "sha256": sha256(path),
                            "reference_sha256": sha256(OUT / f"{name}.tv.npy.gz")})
    manifest = {"transform": "Image.open(f).convert('RGB'), Resize(256), CenterCrop(224)",
                "versions": versions(), "images": entries}
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.iterdir())
    for e in entries:
        print(f"{e['file']:14} {e['mode']:5} {e['width']}x{e['height']}"
              f"  {(OUT / e['file']).stat().st_size / 1024:6.1f} KiB")
    print(f"total {total / 1024:.0f} KiB in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
