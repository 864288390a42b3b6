#!/usr/bin/python3
"""Load a (purified) TorchScript model with torch.jit.load, predict the clean and the
triggered test rows written by `antidote poison`, and compare with what antidote
predicted (`antidote eval --predictions`) and measured (`antidote eval --json`).

Exit status 0 when the predictions are identical, the metrics agree exactly, and
(with --asr-below) the ASR is lower than the given one; 1 otherwise.
"""
import argparse
import json
import sys

import torch

from common import load_split, predict, same_predictions


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="`antidote poison` output directory")
    ap.add_argument("--predictions", required=True, help="antidote eval --predictions JSON")
    ap.add_argument("--metrics", help="antidote eval --json JSON")
    ap.add_argument("--target", type=int, default=0)
    ap.add_argument("--asr-below", type=float, help="fail unless the ASR is below this")
    ap.add_argument("--out", help="write {cacc, asr} as JSON here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = torch.jit.load(a.model)
    model.eval()
    xc, yc = load_split(a.data, "t10k")
    xt, yt = load_split(a.data, "triggered")
    pc, pt = predict(model, xc), predict(model, xt)
    ok = same_predictions(pc, pt, a.predictions)
    cacc = (pc == yc).double().mean().item()
    asr = (pt == a.target).double().mean().item()
    print(f"python: CACC {100 * cacc:.2f}% ASR {100 * asr:.2f}%")
    if a.metrics:
        with open(a.metrics) as f:
            m = json.load(f)
        print(f"antidote: CACC {100 * m['cacc']:.2f}% ASR {100 * m['asr']:.2f}%")
        if abs(m["cacc"] - cacc) > 1e-12 or abs(m["asr"] - asr) > 1e-12:
            print("FAIL: metrics differ")
            ok = False
    if a.asr_below is not None:
        if not asr < a.asr_below:
            print(f"FAIL: ASR {100 * asr:.2f}% is not below {100 * a.asr_below:.2f}%")
            ok = False
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"cacc": cacc, "asr": asr}, f)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
