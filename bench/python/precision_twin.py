#!/usr/bin/python3
"""PyTorch twin of bench/precision.sh: training steps of the small CNN and of
PreAct-ResNet-18 (the architectures of src/antidote/models/image_models.cpp, layer for
layer) on random 1x28x28 images, in float32 and under torch.cpu.amp.autocast(bfloat16),
plus float32 and bfloat16 rates of a matmul and of a convolution. Prints one JSON object.

Usage: precision_twin.py --threads N [--steps S] [--resnet-steps R] [--peaks-only]
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from preact_block import PreActBlock

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--steps", type=int, default=40)
ap.add_argument("--resnet-steps", type=int, default=4)
ap.add_argument("--peaks-only", action="store_true", help="only the matmul and convolution rates")
args = ap.parse_args()
torch.set_num_threads(args.threads)


class SmallCnn(nn.Module):
    def __init__(self, width=32, hidden=128, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * 7 * 7, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return self.fc2(F.relu(self.fc1(h.flatten(1))))


class PreActResNet18(nn.Module):
    def __init__(self, width=64, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        blocks, cin = [], width
        for s, w in enumerate([width, 2 * width, 4 * width, 8 * width]):
            for b in range(2):
                blocks.append(PreActBlock(cin, w, 2 if (b == 0 and s > 0) else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        h = self.blocks(self.conv1(x))
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.bn(h)), 1).flatten(1))


def train_rate(model, batch, steps, bf16):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))

    def step():
        with torch.cpu.amp.autocast(enabled=bf16, dtype=torch.bfloat16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up: oneDNN picks and caches its kernels
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t)


def matmul_gflops(dtype, n=2048, reps=10):
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def conv_gflops(bf16, reps=10):
    # A 3x3 convolution of PreAct-ResNet-18's second stage (128 channels at 14x14), batch 128.
    conv = nn.Conv2d(128, 128, 3, padding=1, bias=False)
    x = torch.randn(128, 128, 14, 14)
    with torch.no_grad(), torch.cpu.amp.autocast(enabled=bf16, dtype=torch.bfloat16):
        conv(x)
        t = time.perf_counter()
        for _ in range(reps):
            conv(x)
    return 2 * 128 * 128 * 128 * 9 * 14 * 14 * reps / (time.perf_counter() - t) / 1e9


torch.manual_seed(0)
out = {"threads": args.threads,
       "matmul_fp32": matmul_gflops(torch.float32), "matmul_bf16": matmul_gflops(torch.bfloat16),
       "conv_fp32": conv_gflops(False), "conv_bf16": conv_gflops(True)}
models = [] if args.peaks_only else [("cnn", SmallCnn, args.steps),
                                      ("preact_resnet18", PreActResNet18, args.resnet_steps)]
for name, make, steps in models:
    for precision in ["fp32", "bf16"]:
        torch.manual_seed(0)
        out[f"{name}_{precision}"] = train_rate(make(), 128, steps, precision == "bf16")
print(json.dumps(out))
