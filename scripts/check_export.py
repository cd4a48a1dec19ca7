"""Checks that files written by `directclr export` load into PyTorch with strict=True.

    python scripts/check_export.py ENCODER.pt ENCODER.safetensors --arch resnet18 --stem cifar --width 0.0625

With torchvision installed, the model is torchvision's `resnetXX()` (CIFAR stem: conv1 3x3
stride 1, no max-pool) with `fc = nn.Identity()`; without it (and for --width != 1) a
ResNet with torchvision's module names built here. The .pt is read with
`torch.load(f, weights_only=True)`; the .safetensors with `safetensors.torch.load_file` when
safetensors is installed, else by a reader of the format written here. Both are loaded with
`load_state_dict(strict=True)` and must give the same representation.
"""
import argparse
import json
import struct

import torch
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("files", nargs="+")
p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
p.add_argument("--stem", default="imagenet", choices=["imagenet", "cifar"])
p.add_argument("--width", type=float, default=1.0)
a = p.parse_args()
BLOCKS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3], "resnet50": [3, 4, 6, 3]}


class Basic(nn.Module):
    expansion = 1

    def __init__(self, c_in, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or c_in != planes:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or c_in != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)))
        return torch.relu(self.bn3(self.conv3(h)) + idt)


class ResNet(nn.Module):
    def __init__(self, arch, stem, width):
        super().__init__()
        w = int(round(64 * width))
        block = Bottleneck if arch == "resnet50" else Basic
        k, s, pad = (3, 1, 1) if stem == "cifar" else (7, 2, 3)
        self.conv1 = nn.Conv2d(3, w, k, s, pad, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.pool = nn.Identity() if stem == "cifar" else nn.MaxPool2d(3, 2, 1)
        c = w
        for i, n in enumerate(BLOCKS[arch]):
            blocks = []
            for j in range(n):
                blocks.append(block(c, w << i, (1 if i == 0 else 2) if j == 0 else 1))
                c = (w << i) * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Identity()

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def build():
    try:
        import torchvision
        if a.width != 1.0:
            raise ImportError
        m = getattr(torchvision.models, a.arch)()
        if a.stem == "cifar":
            m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            m.maxpool = nn.Identity()
        m.fc = nn.Identity()
        return m, f"torchvision {torchvision.__version__} {a.arch}"
    except ImportError:
        return ResNet(a.arch, a.stem, a.width), f"{a.arch} with torchvision's names (built here)"


def read_safetensors(path):
    try:
        from safetensors.torch import load_file
        return load_file(path)
    except ImportError:
        pass
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    dt = {"F32": torch.float32, "I64": torch.int64, "F64": torch.float64, "F16": torch.float16,
          "BF16": torch.bfloat16}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        buf = bytearray(raw[8 + n + b:8 + n + e])
        out[k] = torch.frombuffer(buf, dtype=dt[v["dtype"]]).reshape(v["shape"]).clone()
    return out


torch.manual_seed(0)
x = torch.randn(4, 3, 32, 32)
outputs = []
for f in a.files:
    m, what = build()
    sd = read_safetensors(f) if f.endswith(".safetensors") else torch.load(f, weights_only=True)
    result = m.load_state_dict(sd, strict=True)
    m.eval()
    with torch.no_grad():
        r = m(x)
    outputs.append(r)
    print(f"{f}: {len(sd)} tensors loaded with strict=True into {what} ({result}); "
          f"r {tuple(r.shape)}, mean {r.mean().item():.6f}")
for f, r in zip(a.files[1:], outputs[1:]):
    assert torch.equal(r, outputs[0]), f
if len(outputs) > 1:
    print(f"the {len(outputs)} files give the same representation, bit for bit")
print("torch", torch.__version__)
