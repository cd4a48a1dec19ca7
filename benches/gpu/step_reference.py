"""The authors' pretraining step in plain PyTorch, the anchor of benches/gpu: a ResNet with
torchvision's layout and names (ResNet-18 or -50, CIFAR stem at 32 px or ImageNet stem, fc
removed, zero_init_residual), the SimCLR projector Linear(d, d, bias=False) BN ReLU
Linear(d, 128, bias=False) BN, the authors' InfoNCE (normalised, cross-view, symmetric,
tau 0.1) and the authors' LARS (eta 0.001, momentum 0.9, wd 1e-6, 1-d parameters excluded,
one tensor at a time as in their main.py), with optional bf16 autocast, channels-last,
torch.backends.cudnn.benchmark and torch.compile of the network. The inputs are the same
formula of the element index as crates/directclr/examples/train_step_bench.rs; --init loads the
initial weights that binary wrote (--save-init), so both start from the same point.

Needs only torch (no torchvision, no safetensors package). Prints one JSON line."""
import argparse, json, os, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_reference import LARS, info_nce  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--device", default="cpu")
p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"])
p.add_argument("--size", type=int, default=32)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--bf16", action="store_true")
p.add_argument("--channels-last", action="store_true")
p.add_argument("--no-cudnn-benchmark", action="store_true")
p.add_argument("--compile", action="store_true")
p.add_argument("--init", default=None, help="safetensors file of train_step_bench --save-init")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
dev = torch.device(a.device)
cuda = dev.type == "cuda"
torch.backends.cudnn.benchmark = cuda and not a.no_cudnn_benchmark
torch.manual_seed(0)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.downsample = None
        if stride != 1 or cin != c:
            self.downsample = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, 4 * c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * c)
        self.downsample = None
        if stride != 1 or cin != 4 * c:
            self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * c, 1, stride, bias=False), nn.BatchNorm2d(4 * c))
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + idt)


class ResNet(nn.Module):
    def __init__(self, block, layers, cifar):
        super().__init__()
        if cifar:
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (c, n) in enumerate(zip([64, 128, 256, 512], layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, c, 2 if (j == 0 and i > 0) else 1))
                cin = c * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.feat_dim = cin

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


block, layers = (BasicBlock, [2, 2, 2, 2]) if a.arch == "resnet18" else (Bottleneck, [3, 4, 6, 3])
net = ResNet(block, layers, cifar=a.size <= 64)
d = net.feat_dim
head = nn.Sequential(nn.Linear(d, d, bias=False), nn.BatchNorm1d(d), nn.ReLU(True),
                     nn.Linear(d, 128, bias=False), nn.BatchNorm1d(128))


def read_safetensors(path):
    """A safetensors file as a dict of tensors: 8-byte header length, JSON header, raw data."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    dtypes = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "BF16": torch.bfloat16,
              "F16": torch.float16}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        buf = bytearray(data[8 + n + s:8 + n + e])
        t = torch.frombuffer(buf, dtype=dtypes[v["dtype"]]) if e > s else torch.zeros(0, dtype=dtypes[v["dtype"]])
        out[k] = t.reshape(v["shape"]).clone()
    return out


if a.init:
    state = read_safetensors(a.init)
    for prefix, module in (("encoder.", net), ("head.", head)):
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        missing, unexpected = module.load_state_dict(sub, strict=False)
        missing = [m for m in missing if not m.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise SystemExit(f"--init {a.init}: {prefix} missing {missing}, unexpected {unexpected}")

fmt = torch.channels_last if a.channels_last else torch.contiguous_format
net = net.to(dev, memory_format=fmt)
head = head.to(dev)
params = list(net.parameters()) + list(head.parameters())


opt = LARS(params, lr=0.3)


def inputs(n, s, offset):
    i = torch.arange(n * 3 * s * s, dtype=torch.float64) + offset
    v = i * 0.6180339887
    return ((v - v.floor()) * 2.0 - 1.0).float().view(n, 3, s, s)


x1 = inputs(a.batch, a.size, 0.0).to(dev).contiguous(memory_format=fmt)
x2 = inputs(a.batch, a.size, 0.5).to(dev).contiguous(memory_format=fmt)


def embed(x):
    return head(net(x))


model = torch.compile(embed) if a.compile else embed


def sync():
    if cuda:
        torch.cuda.synchronize(dev)


losses = []
t0 = time.perf_counter()
for step in range(a.warmup + a.steps):
    if step == a.warmup:
        sync()
        compile_s = time.perf_counter() - t0
        start = time.perf_counter()
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
        loss = info_nce(model(x1), model(x2))
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.detach())
sync()
seconds = time.perf_counter() - start
vals = [l.item() for l in losses]
print(json.dumps({"impl": "pytorch-compile" if a.compile else "pytorch-eager", "torch": torch.__version__,
                  "device": torch.cuda.get_device_name(dev) if cuda else "cpu", "arch": a.arch, "size": a.size,
                  "batch": a.batch, "steps": a.steps, "seconds": seconds,
                  "view_images_per_s": 2 * a.batch * a.steps / seconds, "threads": torch.get_num_threads(),
                  "bf16": a.bf16, "channels_last": a.channels_last, "cudnn_benchmark": torch.backends.cudnn.benchmark,
                  "warmup_seconds": compile_s, "finite": all(map(lambda v: v == v and abs(v) != float("inf"), vals)),
                  "first_losses": vals[:3]}))
