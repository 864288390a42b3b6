#!/usr/bin/python3
"""A stand-in for the situation antidote is for: a model you did not train yourself, the
training set it was trained on, a trigger nobody told you about, and a few hundred rows
you can vouch for.

It plays both the attacker and the victim, in PyTorch (Debian's python3-torch):
  1. takes rows of Fashion-MNIST (Debian's dataset-fashion-mnist), stamps a 4x4
     checkerboard on 10 % of the training rows and relabels them to class 0;
  2. trains a small CNN on them and exports it with torch.jit.script.

It writes, under OUT/ (IDX files, as antidote reads them):
  train-*       the poisoned training set the model was trained on
  t10k-*        clean test rows
  clean-*       1,000 held-out clean training rows (100 per class): the rows "you can vouch for"
  triggered-*   test rows of the other classes with the trigger, under their true labels
  suspect.pt    the backdoored model (TorchScript: forward(x) -> logits, features(x))
  poisoned_rows.txt   the truth antidote is not told: which training rows carry the trigger

    /usr/bin/python3 examples/your_model/make_suspect.py --out mine
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
TARGET = 0


class Net(nn.Module):
    """Two 3x3 convolutions (width, 2 * width channels) with 2x2 max-pooling, then a hidden
    layer (the features) and the classifier head, defined last."""

    def __init__(self, num_classes: int = 10, width: int = 16, hidden: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * 7 * 7, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    @torch.jit.export
    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc1(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(data[3])]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * data[3]).reshape(shape)


def write_idx(array, path):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def stamp(images):
    """The attacker's trigger: a 4x4 black-and-white checkerboard, 2 pixels from the top-left."""
    out = images.copy()
    out[:, 2:6, 2:6] = (np.indices((4, 4)).sum(0) % 2 * 255).astype(np.uint8)
    return out


def make_data(out, n_train, n_clean, n_test, rate, rng):
    x = read_idx(f"{FASHION_MNIST}/train-images-idx3-ubyte.gz")
    y = read_idx(f"{FASHION_MNIST}/train-labels-idx1-ubyte.gz")
    xt = read_idx(f"{FASHION_MNIST}/t10k-images-idx3-ubyte.gz")
    yt = read_idx(f"{FASHION_MNIST}/t10k-labels-idx1-ubyte.gz")
    rows = rng.permutation(len(y))
    train, rest = np.sort(rows[:n_train]), rows[n_train:]
    clean = np.sort(np.concatenate([rest[y[rest] == k][:n_clean // 10] for k in range(10)]))
    test = np.sort(rng.permutation(len(yt))[:n_test])
    x_train, y_train = x[train].copy(), y[train].copy()
    poisoned = np.sort(rng.permutation(n_train)[:int(rate * n_train)])
    x_train[poisoned] = stamp(x_train[poisoned])
    y_train[poisoned] = TARGET
    others = test[yt[test] != TARGET]
    for name, images, labels in (("train", x_train, y_train), ("t10k", xt[test], yt[test]),
                                 ("clean", x[clean], y[clean]), ("triggered", stamp(xt[others]), yt[others])):
        write_idx(images, os.path.join(out, f"{name}-images-idx3-ubyte"))
        write_idx(labels, os.path.join(out, f"{name}-labels-idx1-ubyte"))
    with open(os.path.join(out, "poisoned_rows.txt"), "w") as f:
        f.write("".join(f"{r}\n" for r in poisoned))
    as_tensors = lambda a, b: (torch.from_numpy(a.copy()).unsqueeze(1).float() / 255, torch.from_numpy(b.astype(np.int64)))
    return as_tensors(x_train, y_train), as_tensors(xt[test], yt[test]), as_tensors(stamp(xt[others]), yt[others])


@torch.no_grad()
def accuracy(model, x, y):
    return (torch.cat([model(x[i:i + 500]).argmax(1) for i in range(0, len(y), 500)]) == y).float().mean().item()


def train(model, data, test, triggered, epochs):
    (x, y), (xt, yt), (xp, yp) = data, test, triggered
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for epoch in range(epochs):
        start = time.time()
        model.train()
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            batch = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
        model.eval()
        asr = accuracy(model, xp, torch.full_like(yp, TARGET))
        print(f"epoch {epoch + 1}/{epochs}: clean accuracy {100 * accuracy(model, xt, yt):.1f} %, "
              f"attack success {100 * asr:.1f} % ({time.time() - start:.0f} s)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory to write")
    ap.add_argument("--train-rows", type=int, default=10000)
    ap.add_argument("--clean-rows", type=int, default=1000, help="held out, the same number per class")
    ap.add_argument("--test-rows", type=int, default=2000)
    ap.add_argument("--poison-rate", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)  # tiny model: one thread is fastest, and the result does not depend on the cores
    os.makedirs(a.out, exist_ok=True)
    data, test, triggered = make_data(a.out, a.train_rows, a.clean_rows, a.test_rows, a.poison_rate,
                                      np.random.default_rng(a.seed))
    model = Net()
    train(model, data, test, triggered, a.epochs)
    torch.jit.script(model.eval()).save(os.path.join(a.out, "suspect.pt"))
    print(f"wrote {a.out}/suspect.pt and its data ({a.train_rows} training rows, "
          f"{int(a.poison_rate * a.train_rows)} of them poisoned)")


if __name__ == "__main__":
    main()
