"""Writes data/fashion-mnist-subset/: the first 10,000 training and first 2,000 test images of
Fashion-MNIST (MIT licence, Zalando Research) in the original IDX gzip format, for the quick
start that must run without any download. Usage:
    python3 scripts/make_fashion_mnist_subset.py /path/to/fashion-mnist data/fashion-mnist-subset
"""
import gzip, shutil, struct, sys
from pathlib import Path

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
for split, count in (("train", 10_000), ("t10k", 2_000)):
    for kind, item in (("images-idx3-ubyte", 28 * 28), ("labels-idx1-ubyte", 1)):
        name = f"{split}-{kind}.gz"
        raw = gzip.open(src / name).read()
        magic = struct.unpack(">I", raw[:4])[0]
        dims = magic & 0xFF
        header = 4 + 4 * dims
        shape = list(struct.unpack(f">{dims}I", raw[4:header]))
        assert shape[0] >= count
        shape[0] = count
        out = struct.pack(">I", magic) + struct.pack(f">{dims}I", *shape) + raw[header:header + count * item]
        # mtime=0: the same bytes on every run.
        with open(dst / name, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as g:
            g.write(out)
shutil.copy(src / "LICENSE", dst / "LICENSE")
