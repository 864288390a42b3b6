#!/usr/bin/python3
"""What a user does: define a small CNN in PyTorch, train it on (poisoned) Fashion-MNIST,
export it with torch.jit.script for antidote.

    antidote poison --config cfg.yaml --out data/      # or your own IDX files
    /usr/bin/python3 make_model.py --data data/ --out suspect.pt

The contract antidote needs: forward(x) returns logits, and a method features(x)
(exported with @torch.jit.export) returns the penultimate features.
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

from common import load_split, predict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "your_model"))
from make_suspect import Net  # noqa: E402  (the example's model, shared)


def SmallCnn(num_classes: int = 10):
    """The example's CNN at a width of 8 (16 * 7 * 7 -> 32 -> num_classes)."""
    return Net(num_classes, width=8, hidden=32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="directory with train/t10k/triggered IDX files")
    ap.add_argument("--out", required=True, help="TorchScript file to write")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    x, y = load_split(a.data, "train")
    xt, yt = load_split(a.data, "t10k")
    xp, _ = load_split(a.data, "triggered")
    model = SmallCnn(int(max(y.max(), yt.max())) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    t0 = time.time()
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        model.eval()
        cacc = (predict(model, xt) == yt).float().mean().item()
        asr = (predict(model, xp) == 0).float().mean().item()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f} CACC {100 * cacc:.1f}% ASR {100 * asr:.1f}% "
              f"({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    scripted = torch.jit.script(model)
    scripted.save(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
