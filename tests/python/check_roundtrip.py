#!/usr/bin/python3
"""Load a (purified) TorchScript model with torch.jit.load, predict the clean and the
triggered test rows written by `antidote poison`, and compare with what antidote
predicted (`antidote eval --predictions`) and measured (`antidote eval --json`).

Exit status 0 when the predictions are identical, the metrics agree exactly, and
(with --asr-below) the ASR is lower than the given one; 1 otherwise.
"""
import argparse
import sys

import torch

from common import compare_with_antidote, load_split, predict


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
    return compare_with_antidote(pc, pt, yc, a)


if __name__ == "__main__":
    sys.exit(main())
