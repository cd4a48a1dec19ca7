"""Compares directclr's evaluation transform with torchvision's on the committed files of
crates/directclr/tests/fixtures/eval_images/ and prints the table of docs/eval-transform.md.

    python scripts/check_eval_transform.py               # verify references, run the test, compare
    python scripts/check_eval_transform.py --dump DIR    # reuse the outputs of an earlier run

1. Recomputes torchvision's reference of every committed file (scripts/make_eval_fixtures.py)
   and checks it equals the committed one (it may not with another Pillow: see the manifest).
2. Runs `cargo test --release -p directclr --test data_eval_transform` with
   DIRECTCLR_EVAL_DUMP set, which writes directclr's decoded pixels, its f32 output and the u8
   loader output of each file.
3. Prints per file, in levels (1/255): the decoders' difference (raw, and resampled: the
   `DECODE` term), the resampling alone (Pillow on directclr's decoded pixels against
   directclr), the whole f32 transform (max, mean), and the u8 loader output (max, pixels that
   differ).
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_eval_fixtures as fx  # noqa: E402

CROP = fx.CROP


def tv_resize_crop(img):
    """torchvision's Resize(256) + CenterCrop(224) of a Pillow image (RGB or F)."""
    return np.asarray(transforms.CenterCrop(CROP)(transforms.Resize(fx.RESIZE)(img)))


def run_test(dump):
    cmd = ("source scripts/env.sh >/dev/null && cargo test --release -p directclr "
           "--test data_eval_transform -- --nocapture --test-threads 1")
    env = dict(__import__("os").environ, DIRECTCLR_EVAL_DUMP=str(dump))
    r = subprocess.run(["bash", "-c", cmd], cwd=fx.ROOT, env=env, capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if line.startswith(("eval-f32", "eval-u8", "test ")):
            print("  " + line)
    if r.returncode != 0:
        print(r.stdout[-4000:], r.stderr[-4000:], sep="\n")
        print(f"the test failed (exit {r.returncode}); comparing what it wrote")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dump", type=Path, help="outputs of an earlier run (skips cargo)")
    a = p.parse_args()

    print("references:", fx.versions())
    for name, *_ in fx.IMAGES:
        ref = fx.read_reference(fx.OUT / f"{name}.tv.npy.gz")
        same = np.array_equal(ref, fx.tv_reference(fx.OUT / name))
        print(f"  {name:14} recomputed reference {'equal' if same else 'DIFFERS'}")

    tmp = None
    if a.dump is None:
        tmp = tempfile.TemporaryDirectory()
        a.dump = Path(tmp.name)
        print("cargo test (directclr's outputs into", a.dump, ")")
        run_test(a.dump)

    print("\n| file | decode max / mean | DECODE term | resampling max / mean "
          "| f32 max / mean | u8 max / differing |")
    print("|---|---|---|---|---|---|")
    for name, *_ in fx.IMAGES:
        with Image.open(fx.OUT / name) as im:
            pil = np.asarray(im.convert("RGB")).astype(np.float32)
        dec = np.load(a.dump / f"{name}.decoded.npy").astype(np.float32)
        if dec.shape[2] == 1:
            dec = np.repeat(dec, 3, axis=2)
        d = np.abs(pil - dec)
        # The decoders' difference as it reaches the outputs: |d| resampled with the same
        # (nonnegative) bilinear weights, in float.
        term = np.stack([tv_resize_crop(Image.fromarray(d[..., c], "F")) for c in range(3)], -1)
        ours = np.load(a.dump / f"{name}.ours.npy").transpose(1, 2, 0).astype(np.float64) * 255
        tv = fx.read_reference(fx.OUT / f"{name}.tv.npy.gz").astype(np.float64)
        # The resampling alone: Pillow on directclr's own decoded pixels.
        alone = tv_resize_crop(Image.fromarray(dec.astype(np.uint8), "RGB")).astype(np.float64)
        r, t = np.abs(ours - alone), np.abs(ours - tv)
        u8 = np.load(a.dump / f"{name}.loader.npy").transpose(1, 2, 0).astype(np.int64)
        du8 = np.abs(u8 - tv.astype(np.int64))
        print(f"| {name} | {d.max():.0f} / {d.mean():.3f} | {term.max():.2f} "
              f"| {r.max():.3f} / {r.mean():.3f} | {t.max():.3f} / {t.mean():.3f} "
              f"| {du8.max()} / {(du8 != 0).sum()} of {du8.size} |")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
