#!/usr/bin/python3
"""What a user with a BERT-style text classifier does: a small BERT (token, position and
segment embeddings, two post-LayerNorm encoder layers whose self-attention honours the
attention mask, a [CLS] pooler with tanh, the classifier head last) trained on a
(poisoned) TSV with a WordPiece vocab.txt, exported with torch.jit.trace for antidote.

    antidote poison --config cfg.yaml --out data/      # or your own train.tsv
    /usr/bin/python3 make_bert.py --data data/ --out suspect.pt   # + suspect.pt.vocab

The contract antidote needs: forward(input_ids, attention_mask) returns (logits, hidden
states [B, L, H]), the vocabulary beside the model as MODEL.vocab (HuggingFace's
vocab.txt format), and the sequence length as an integer buffer `max_len` (torch.jit.trace
keeps buffers, not plain int attributes).

The WordPiece tokenizer here is the reference antidote's C++ one is checked against:
HuggingFace's BasicTokenizer for uncased models (with Python's own Unicode tables), then
greedy longest-match-first pieces.
"""
import argparse
import collections
import csv
import math
import time
import unicodedata

import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_WORD_CHARS = 100


# ---- WordPiece -----------------------------------------------------------------------

def _is_control(ch):
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_whitespace(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp):
    return any(lo <= cp <= hi for lo, hi in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
                                             (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF),
                                             (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def basic_tokens(text, lower_case=True):
    """Cleaned, split on whitespace, lower-cased and stripped of accents, punctuation and
    CJK characters split off."""
    kept = []
    for ch in text:
        if ord(ch) in (0, 0xFFFD) or _is_control(ch):
            continue
        if _is_whitespace(ch):
            kept.append(" ")
        elif _is_cjk(ord(ch)):
            kept.append(f" {ch} ")
        else:
            kept.append(ch)
    out = []
    for token in "".join(kept).split():
        if lower_case:
            token = unicodedata.normalize("NFD", token.lower())
            token = "".join(c for c in token if unicodedata.category(c) != "Mn")
        word = ""
        for ch in token:
            if _is_punctuation(ch):
                if word:
                    out.append(word)
                out.append(ch)
                word = ""
            else:
                word += ch
        if word:
            out.append(word)
    return out


class WordPiece:
    def __init__(self, tokens):
        self.tokens = list(tokens)
        self.index = {}
        for i, t in enumerate(self.tokens):
            if t:
                self.index[t] = i  # a repeated token keeps its last line
        self.pad, self.unk = self.index["[PAD]"], self.index["[UNK]"]
        self.cls, self.sep = self.index["[CLS]"], self.index["[SEP]"]
        self.lower_case = not any(any("A" <= c <= "Z" for c in t) for t in self.tokens
                                  if not (len(t) >= 2 and t[0] == "[" and t[-1] == "]"))

    @staticmethod
    def read(path):
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return WordPiece(line[:-1] if line.endswith("\r") else line for line in lines)

    def write(self, path):
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("".join(t + "\n" for t in self.tokens))

    def word_ids(self, word):
        if len(word) > MAX_WORD_CHARS:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while end > start:
                piece = ("##" if start > 0 else "") + word[start:end]
                if piece in self.index:
                    found = self.index[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            start = end
        return ids

    def encode(self, text, max_len):
        pieces = [i for w in basic_tokens(text, self.lower_case) for i in self.word_ids(w)][:max_len - 2]
        row = [self.cls] + pieces + [self.sep]
        return row + [self.pad] * (max_len - len(row))

    def encode_all(self, texts, max_len):
        return torch.tensor([self.encode(t, max_len) for t in texts], dtype=torch.int64)


def build_vocab(texts, words=3000, affixes=150):
    """HuggingFace's layout ([PAD] 0, [unused*], [UNK] 100, [CLS] 101, [SEP] 102, [MASK]
    103), then single characters and their ## forms, the frequent words, and frequent
    prefixes and ## suffixes of the other words, so that rarer words split into pieces."""
    counts = collections.Counter(w for t in texts for w in basic_tokens(t))
    chars = sorted({c for w in counts for c in w})
    common = [w for w, c in counts.most_common(words) if c >= 2]
    known = set(common)
    prefixes, suffixes = collections.Counter(), collections.Counter()
    for w, c in counts.items():
        if w in known or len(w) < 4:
            continue
        for k in range(2, 5):
            if k < len(w):
                prefixes[w[:k]] += c
                suffixes[w[-k:]] += c
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += chars + ["##" + c for c in chars] + common
    tokens += [p for p, _ in prefixes.most_common(affixes)] + ["##" + s for s, _ in suffixes.most_common(affixes)]
    seen, out = set(), []
    for t in tokens:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return WordPiece(out)


def read_tsv(path):
    """antidote's TSV: a header naming the sentence and label columns."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if r and any(x.strip() for x in r)]
    head = [h.strip() for h in rows[0]]
    si = next(i for i, h in enumerate(head) if h in ("sentence", "sentences", "text"))
    li = next(i for i, h in enumerate(head) if h in ("label", "labels"))
    blank = " \t\n\r\v\f"  # antidote trims ASCII whitespace only
    return [r[si].strip(blank) for r in rows[1:]], [int(r[li]) for r in rows[1:]]


# ---- the model -------------------------------------------------------------------------

class SelfAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, h, bias):
        b, length, dim = h.shape
        split = lambda t: t.view(b, length, self.heads, dim // self.heads).transpose(1, 2)
        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        scores = q @ k.transpose(-1, -2) * self.scale + bias
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, length, dim)
        return self.out(ctx)


class EncoderLayer(nn.Module):
    def __init__(self, dim, heads, ff):
        super().__init__()
        self.attention = SelfAttention(dim, heads)
        self.ln1 = nn.LayerNorm(dim, eps=1e-12)
        self.ff1 = nn.Linear(dim, ff)
        self.ff2 = nn.Linear(ff, dim)
        self.ln2 = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, h, bias):
        h = self.ln1(h + self.attention(h, bias))
        return self.ln2(h + self.ff2(F.gelu(self.ff1(h))))


class TinyBert(nn.Module):
    """No dropout: a traced graph keeps the training flag it was traced with."""

    def __init__(self, vocab_size, num_classes, max_len, dim=64, heads=4, layers=2, ff=128):
        super().__init__()
        self.register_buffer("max_len", torch.tensor(max_len))
        self.register_buffer("position_ids", torch.arange(max_len).unsqueeze(0), persistent=False)
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.seg = nn.Embedding(2, dim)
        self.ln = nn.LayerNorm(dim, eps=1e-12)
        self.layers = nn.ModuleList([EncoderLayer(dim, heads, ff) for _ in range(layers)])
        self.pooler = nn.Linear(dim, dim)
        self.classifier = nn.Linear(dim, num_classes)  # the head, defined last
        for m in self.modules():  # BERT's initialisation: small weights train stably from scratch
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, input_ids, attention_mask):
        length = input_ids.shape[1]
        segments = torch.zeros_like(input_ids)
        h = self.ln(self.tok(input_ids) + self.pos(self.position_ids[:, :length]) + self.seg(segments))
        bias = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * -10000.0  # [PAD] gets no attention
        for layer in self.layers:
            h = layer(h, bias)
        pooled = torch.tanh(self.pooler(h[:, 0]))
        return self.classifier(pooled), h


@torch.no_grad()
def predict(model, ids, pad, batch=256):
    out = []
    for i in range(0, ids.shape[0], batch):
        x = ids[i:i + batch]
        out.append(model(x, (x != pad).to(torch.int64))[0].argmax(1))
    return torch.cat(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="directory with train.tsv, test.tsv, test_triggered.tsv")
    ap.add_argument("--out", required=True, help="TorchScript file to write (and OUT.vocab)")
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--target", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    texts, labels = read_tsv(f"{a.data}/train.tsv")
    test, test_labels = read_tsv(f"{a.data}/test.tsv")
    trig, _ = read_tsv(f"{a.data}/test_triggered.tsv")
    vocab = build_vocab(texts)
    vocab.write(a.out + ".vocab")
    x, y = vocab.encode_all(texts, a.max_len), torch.tensor(labels)
    xt, yt, xp = vocab.encode_all(test, a.max_len), torch.tensor(test_labels), vocab.encode_all(trig, a.max_len)
    unk = (x == vocab.unk).sum().item() / (x != vocab.pad).sum().item()
    print(f"vocabulary: {len(vocab.tokens)} tokens; {100 * unk:.2f}% of training tokens are [UNK]")
    model = TinyBert(len(vocab.tokens), max(labels) + 1, a.max_len)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    steps = a.epochs * math.ceil(x.shape[0] / 32)
    warmup = steps // 10
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, (steps - s) / (steps - warmup)))
    t0 = time.time()
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx], (x[idx] != vocab.pad).to(torch.int64))[0], y[idx])
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        cacc = (predict(model, xt, vocab.pad) == yt).float().mean().item()
        asr = (predict(model, xp, vocab.pad) == a.target).float().mean().item()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f} CACC {100 * cacc:.1f}% ASR {100 * asr:.1f}% "
              f"({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    example = x[:2]
    traced = torch.jit.trace(model, (example, (example != vocab.pad).to(torch.int64)))
    traced.save(a.out)
    print(f"wrote {a.out} and {a.out}.vocab")


if __name__ == "__main__":
    main()
