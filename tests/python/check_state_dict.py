#!/usr/bin/python3
"""Read the state_dict antidote writes beside a built-in model (`model.pt.state_dict.pt`)
with torch.load, check the documented parameter names (docs/torchscript.md), load it
into the same small CNN written in PyTorch, and compare its predictions with
antidote's (`antidote eval --predictions`)."""
import argparse
import json
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import load_split, predict


class AntidoteCnn(nn.Module):
    """antidote's built-in `cnn` (src/antidote/models/image_models.cpp) in PyTorch."""

    def __init__(self, channels=1, height=28, width_px=28, num_classes=10, width=32, hidden=128):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * (height // 4) * (width_px // 4), hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.register_buffer("prune_mask", torch.ones(2 * width))

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.relu(self.conv2(h)) * self.prune_mask.view(1, -1, 1, 1)
        h = F.max_pool2d(h, 2)
        return self.fc2(F.relu(self.fc1(h.flatten(1))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--state-dict", required=True)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--data", required=True)
    ap.add_argument("--predictions", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    sd = torch.load(a.state_dict)
    print("state_dict:", ", ".join(f"{k} {list(v.shape)}" for k, v in sd.items()))
    expected = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
                "fc2.weight", "fc2.bias", "prune_mask"]
    if sorted(sd.keys()) != sorted(expected):
        print(f"FAIL: names {sorted(sd.keys())} != documented {sorted(expected)}")
        return 1
    model = AntidoteCnn(width=a.width, hidden=a.hidden)
    model.load_state_dict(sd)
    model.eval()
    xc, yc = load_split(a.data, "t10k")
    xt, _ = load_split(a.data, "triggered")
    with open(a.predictions) as f:
        ref = json.load(f)
    ok = True
    for name, x in (("clean", xc), ("triggered", xt)):
        mine = predict(model, x)
        diff = int((mine != torch.tensor(ref[name])).sum())
        print(f"{name}: {mine.numel()} rows, {diff} predictions differ from antidote's")
        ok = ok and diff == 0
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
