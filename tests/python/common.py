"""Helpers shared by the TorchScript round-trip scripts (Debian's python3-torch)."""
import gzip
import json
import os

import numpy as np
import torch


def read_idx(path):
    """An IDX file (as written by `antidote poison`, optionally .gz) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def images(path):
    """uint8 [N, H, W] -> float32 [N, 1, H, W] in [0, 1], exactly as antidote reads them."""
    return torch.from_numpy(read_idx(path).copy()).unsqueeze(1).to(torch.float32).div_(255.0)


def labels(path):
    return torch.from_numpy(read_idx(path).astype(np.int64))


def load_split(data_dir, prefix):
    """prefix: train, t10k (clean test) or triggered (the triggered test rows)."""
    x = images(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte"))
    y = labels(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte"))
    return x, y


@torch.no_grad()
def predict(model, x, batch=512):
    out = []
    for i in range(0, x.shape[0], batch):
        o = model(x[i:i + batch])
        if isinstance(o, tuple):
            o = o[0]
        out.append(o.argmax(1))
    return torch.cat(out)


def same_predictions(clean, triggered, predictions_path):
    """Whether Python's predicted classes equal those `antidote eval --predictions` wrote,
    on the clean and on the triggered test rows; prints how many differ."""
    with open(predictions_path) as f:
        theirs = json.load(f)
    ok = True
    for name, mine, ref in (("clean", clean, theirs["clean"]), ("triggered", triggered, theirs["triggered"])):
        ref = torch.tensor(ref, dtype=torch.int64)
        if ref.shape != mine.shape:
            print(f"FAIL {name}: antidote predicted {ref.numel()} rows, python {mine.numel()}")
            ok = False
            continue
        diff = int((ref != mine).sum())
        print(f"{name}: {mine.numel()} rows, {diff} predictions differ from antidote's")
        ok = ok and diff == 0
    return ok


def compare_with_antidote(clean, triggered, labels, a):
    """The round trip's verdict on Python's predictions of the clean and triggered test rows:
    the same classes as antidote's (`a.predictions`), the same CACC and ASR as its
    `eval --json` (`a.metrics`, optional), an ASR below `a.asr_below` (optional); writes
    {cacc, asr} to `a.out` (optional). Prints what it finds; returns the exit status."""
    ok = same_predictions(clean, triggered, a.predictions)
    cacc = (clean == labels).double().mean().item()
    asr = (triggered == a.target).double().mean().item()
    print(f"python: CACC {100 * cacc:.2f}% ASR {100 * asr:.2f}%")
    if a.metrics:
        with open(a.metrics) as f:
            m = json.load(f)
        print(f"antidote: CACC {100 * m['cacc']:.2f}% ASR {100 * m['asr']:.2f}%")
        if abs(m["cacc"] - cacc) > 1e-12 or abs(m["asr"] - asr) > 1e-12:
            print("FAIL: metrics differ")
            ok = False
    if a.asr_below is not None and not asr < a.asr_below:
        print(f"FAIL: ASR {100 * asr:.2f}% is not below {100 * a.asr_below:.2f}%")
        ok = False
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"cacc": cacc, "asr": asr}, f)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1
