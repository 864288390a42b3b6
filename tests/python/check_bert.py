#!/usr/bin/python3
"""Checks of a BERT-style TorchScript model after antidote (tests/bert_roundtrip_test.sh).

    check_bert.py rows --data DIR --out rows.tsv
        the rows whose tokenization is compared: the clean and triggered test rows, the
        training rows with non-ASCII letters, and hand-made rows that exercise accents,
        punctuation, control characters, CJK and over-long words
    check_bert.py tokens --vocab V --rows rows.tsv --ids ids.txt --max-len N
        antidote's token ids (one row per line) equal make_bert.py's WordPiece, row by row
    check_bert.py predictions --model M --data DIR --predictions P [--metrics J] [--asr-below X]
        torch.jit.load predicts what `antidote eval --predictions` wrote, and the ASR is lower
"""
import argparse
import sys

import torch

from common import compare_with_antidote
from make_bert import WordPiece, predict, read_tsv

TRICKY = [
    "Café CRÈME brûlée — naïve Ångström , ŒUVRE & Łódź : straße !",
    "don't-stop!!! (really) $5.00 @home #1 ~tilde~ `back` ^caret^ {braces} [brackets] <angle> |pipe|",
    "e\u0301te\u0301 , combining accents written on their own",
    "zero\u200bwidth soft\u00adhyphen bom\ufeffhere bell\x07rings",
    "nbsp\u00a0space ideographic\u3000space em\u2003space line\u2028separator",
    "中文字符 mixed日本text 「quoted」、 fullwidth！？（test）",
    "supercalifragilistic" * 6 + " is longer than a hundred characters",
    "‘single’ “double” …ellipsis – en — em • bullet ¡hola! ¿qué? «guillemets» §7 ¶ ·",
    " ".join(chr(cp) for cp in range(0xC0, 0x180)),
    "[CLS] [SEP] [PAD] [UNK] in running text are plain words",
]


def write_rows(a):
    texts = []
    for name in ("test.tsv", "test_triggered.tsv"):
        texts += read_tsv(f"{a.data}/{name}")[0]
    texts += [t for t in read_tsv(f"{a.data}/train.tsv")[0] if not t.isascii()]
    texts += TRICKY
    with open(a.out, "w", encoding="utf-8", newline="") as f:
        f.write("sentence\tlabel\n")
        for t in texts:
            f.write(t.replace("\t", " ").replace("\n", " ").replace("\r", " ") + "\t0\n")
    print(f"{len(texts)} rows ({len(TRICKY)} hand-made) -> {a.out}")
    return 0


def check_tokens(a):
    vocab = WordPiece.read(a.vocab)
    texts = read_tsv(a.rows)[0]
    with open(a.ids) as f:
        theirs = [[int(v) for v in line.split()] for line in f if line.strip()]
    if len(theirs) != len(texts):
        print(f"FAIL: antidote tokenized {len(theirs)} rows, the file has {len(texts)}")
        return 1
    differ = 0
    for text, ids in zip(texts, theirs):
        mine = vocab.encode(text, a.max_len)
        if mine != ids:
            differ += 1
            if differ <= 5:
                print(f"differ: {text!r}\n  python:   {mine}\n  antidote: {ids}")
    unk = sum(v == vocab.unk for row in theirs for v in row)
    print(f"tokenization: {len(texts) - differ} of {len(texts)} rows identical ({unk} [UNK] ids among them)")
    print("OK" if differ == 0 else "FAILED")
    return 0 if differ == 0 else 1


def check_predictions(a):
    torch.set_num_threads(1)
    model = torch.jit.load(a.model).eval()
    vocab = WordPiece.read(a.model + ".vocab")
    max_len = int(model.max_len)
    clean, yc = read_tsv(f"{a.data}/test.tsv")
    trig, _ = read_tsv(f"{a.data}/test_triggered.tsv")
    pc = predict(model, vocab.encode_all(clean, max_len), vocab.pad)
    pt = predict(model, vocab.encode_all(trig, max_len), vocab.pad)
    return compare_with_antidote(pc, pt, torch.tensor(yc), a)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("rows")
    r.add_argument("--data", required=True)
    r.add_argument("--out", required=True)
    t = sub.add_parser("tokens")
    t.add_argument("--vocab", required=True)
    t.add_argument("--rows", required=True)
    t.add_argument("--ids", required=True)
    t.add_argument("--max-len", type=int, required=True)
    p = sub.add_parser("predictions")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--predictions", required=True)
    p.add_argument("--metrics")
    p.add_argument("--target", type=int, default=1)
    p.add_argument("--asr-below", type=float)
    p.add_argument("--out")
    a = ap.parse_args()
    return {"rows": write_rows, "tokens": check_tokens, "predictions": check_predictions}[a.what](a)


if __name__ == "__main__":
    sys.exit(main())
