"""The reference side of the image-folder benchmark: PyTorch + torchvision computing the
representation r of every image of a flat folder with the standard evaluation transform, as the
authors' spectrum code does (PIL decode, Resize(256), CenterCrop(224), ToTensor, Normalize;
DataLoader workers; eval mode, no grad), timed from the first batch request to the last
feature.

Usage: python torch_features.py ARCH WEIGHTS.pt IMAGE_DIR BATCH WORKERS THREADS OUT.npy
Prints one JSON line: {"images": N, "seconds": s, "images_per_s": …}; writes r [N, dim] f32.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image

arch, weights, folder, batch, workers, threads, out = sys.argv[1:8]
torch.set_num_threads(int(threads))
files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))
tf = T.Compose(
    [T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
)


class Flat(torch.utils.data.Dataset):
    def __len__(self):
        return len(files)

    def __getitem__(self, i):
        with open(files[i], "rb") as f:
            return tf(Image.open(f).convert("RGB"))


model = getattr(torchvision.models, arch)()
model.load_state_dict(torch.load(weights, weights_only=True))
model.fc = torch.nn.Identity()
model.eval()
loader = torch.utils.data.DataLoader(Flat(), batch_size=int(batch), num_workers=int(workers))
start = time.perf_counter()
rs = []
with torch.no_grad():
    for x in loader:
        rs.append(model(x))
seconds = time.perf_counter() - start
r = torch.cat(rs).numpy().astype(np.float32)
np.save(out, r)
print(json.dumps({"images": len(files), "seconds": seconds, "images_per_s": len(files) / seconds}))
