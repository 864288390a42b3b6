#!/usr/bin/python3
"""Back in PyTorch: load a model (the suspect, or antidote's purified one) with
torch.jit.load and measure it on the data make_suspect.py wrote; with --flagged, check
antidote's flagged rows against the truth the stand-in kept.

    /usr/bin/python3 examples/your_model/evaluate.py --data mine --model mine/purified.pt
"""
import argparse
import csv
import os

import numpy as np
import torch

from make_suspect import TARGET, accuracy


def read_split(data, name):
    def read(path):
        with open(path, "rb") as f:
            raw = f.read()
        shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(raw[3])]
        return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=4 + 4 * raw[3]).reshape(shape).copy())
    x = read(os.path.join(data, f"{name}-images-idx3-ubyte"))
    return x.unsqueeze(1).float() / 255, read(os.path.join(data, f"{name}-labels-idx1-ubyte")).long()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the directory make_suspect.py wrote")
    ap.add_argument("--model", required=True, help="a TorchScript model")
    ap.add_argument("--flagged", help="antidote identify's flagged.csv, checked against poisoned_rows.txt")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = torch.jit.load(a.model).eval()
    (xt, yt), (xp, yp) = read_split(a.data, "t10k"), read_split(a.data, "triggered")
    print(f"{os.path.basename(a.model)}: clean accuracy {100 * accuracy(model, xt, yt):.1f} %, "
          f"attack success {100 * accuracy(model, xp, torch.full_like(yp, TARGET)):.1f} %, "
          f"robust accuracy {100 * accuracy(model, xp, yp):.1f} %")
    if a.flagged:
        with open(os.path.join(a.data, "poisoned_rows.txt")) as f:
            truth = {int(line) for line in f}
        with open(a.flagged) as f:
            flagged = [int(r["row"]) for r in csv.DictReader(f)]
        print(f"{sum(r in truth for r in flagged)} of the {len(flagged)} flagged rows carry the trigger "
              f"({len(truth)} of the {len(read_split(a.data, 'train')[1])} training rows do)")


if __name__ == "__main__":
    main()
