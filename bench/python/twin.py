#!/usr/bin/python3
"""PyTorch-Python twins of antidote_bench.

Runs the same work as bench/antidote_bench.cpp, written as a competent PyTorch user
would write it: the same model definitions (SmallCnn and the pre-LN Transformer of
src/antidote/models/*.cpp, parameter for parameter, so the C++ suspect's state_dict
loads), the same batch sizes, optimizers, step counts and threads, and the same
defense loops (BeDKD DMM / identify / AKD, NT-ML NT / ML, FT, FP, NAD) at the sizes
the C++ run reports in antidote.json, at its precision: with bf16 every defense trains
under torch.cpu.amp.autocast(bfloat16), as antidote trains, and every evaluation runs
in float32. Each stage also reports the arithmetic it did (forward passes with and
without gradients, in samples), from which report.py gives the share of the peak.
Needs Debian's python3-torch (1.13): run with /usr/bin/python3.

Usage: twin.py --in DIR --threads N [--blas-threads M] [--sections ...] [--out FILE]
"""
import argparse
import json
import math
import os
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--in", dest="indir", required=True, help="antidote_bench --out directory (antidote.json, dumps)")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--blas-threads", type=int, default=-1, help="OpenBLAS threads (-1: same as --threads; bench/run.sh passes 1, as antidote runs)")
ap.add_argument("--sections", default="matmul,train,eval,defenses")
ap.add_argument("--out", default=None, help="output JSON (default DIR/python.json)")
ap.add_argument("--antidote-json", default=None, help="the C++ results to mirror (default DIR/antidote.json)")
args = ap.parse_args()

# OpenBLAS reads its thread count when the library loads: set it before importing torch.
blas_threads = args.threads if args.blas_threads < 0 else args.blas_threads
os.environ["OPENBLAS_NUM_THREADS"] = str(blas_threads)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from preact_block import PreActBlock  # noqa: E402

torch.set_num_threads(args.threads)
PAD, CLS = 0, 2
SECTIONS = set(args.sections.split(","))
ref = json.load(open(args.antidote_json or os.path.join(args.indir, "antidote.json")))
CHANNELS_LAST = False  # set by the CNN training benchmark when it is faster
BF16 = ref.get("precision", "fp32") == "bf16"
IMAGE_ARCHS = ("cnn", "preact_resnet18")
# Samples through a model's forward pass in the current stage, with gradients (a
# training pass: forward + backward) and without (teacher, evaluation).
PASSES = {"grad": 0, "nograd": 0}


def is_text(arch):
    return arch not in IMAGE_ARCHS


def training_precision():
    """The autocast of a training stage: bfloat16 when the C++ run trained in it."""
    return torch.cpu.amp.autocast(enabled=BF16, dtype=torch.bfloat16)


class running_batch_norm:
    """Batch-norm layers on their running statistics (not updated) for a pass over
    identified rows, as antidote's KeepRunningStatistics (kRunning); the rest as it was."""

    def __init__(self, model):
        self.layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]

    def __enter__(self):
        for m in self.layers:
            m.eval()

    def __exit__(self, *exc):
        for m in self.layers:
            m.train()


def float32():
    """No autocast: evaluations, and the passes antidote runs outside a training."""
    return torch.cpu.amp.autocast(enabled=False)


def float32_outputs(out):
    """forward_full's outputs in float32, as Classifier::forward_full returns them."""
    logits, features, acts = out
    PASSES["grad" if torch.is_grad_enabled() else "nograd"] += logits.shape[0]
    acts = [a.float() for a in acts] if acts is not None else None
    return logits.float(), features.float(), acts


def now():
    return time.perf_counter()


# ---- per-stage peak RSS, as StageTimer does it ------------------------------------------
def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    return 0.0


class Stage:
    def __init__(self, name):
        self.name = name
        reset_peak_rss()
        PASSES["grad"] = PASSES["nograd"] = 0
        self.t0 = now()

    def finish(self):
        return {"name": self.name, "seconds": now() - self.t0, "peak_rss_mb": peak_rss_mb(),
                "grad_samples": PASSES["grad"], "nograd_samples": PASSES["nograd"]}


# ---- models (exact twins of src/antidote/models) ------------------------------------------
class SmallCnn(nn.Module):
    def __init__(self, channels=1, height=28, width_px=28, num_classes=10, width=32, hidden=128):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * (height // 4) * (width_px // 4), hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.register_buffer("prune_mask", torch.ones(2 * width))
        self.pruned = False

    def forward_full(self, x, keep=False):
        if CHANNELS_LAST:
            x = x.contiguous(memory_format=torch.channels_last)
        a1 = F.relu(self.conv1(x))
        h = F.max_pool2d(a1, 2)
        a2 = F.relu(self.conv2(h))
        if self.pruned:
            a2 = a2 * self.prune_mask.view(1, -1, 1, 1)
        h = F.max_pool2d(a2, 2)
        features = F.relu(self.fc1(h.flatten(1)))
        return float32_outputs((self.fc2(features), features, ([a1, a2] if keep else None)))

    def forward(self, x):
        return self.forward_full(x)[0]


class EncoderLayer(nn.Module):
    def __init__(self, d, heads, ff, dropout):
        super().__init__()
        self.heads, self.dim = heads, d
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ff)
        self.ff2 = nn.Linear(ff, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, key_bias):
        B, L, _ = x.shape
        dh = self.dim // self.heads
        q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, self.heads, dh).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(dh)) + key_bias
        attn = self.drop(torch.softmax(scores, -1))
        ctx = torch.matmul(attn, v).transpose(1, 2).reshape(B, L, self.dim)
        h = x + self.drop(self.proj(ctx))
        f = self.ff2(self.drop(F.gelu(self.ff1(self.ln2(h)))))
        return h + self.drop(f)


class Transformer(nn.Module):
    def __init__(self, vocab_size, max_len, num_classes=2, d=64, heads=4, layers=2, ff=128, dropout=0.1):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, d, padding_idx=PAD)
        self.pos = nn.Embedding(max_len, d)
        self.n_layers = layers
        for i in range(layers):  # named layer0, layer1 ... as the C++ modules
            setattr(self, f"layer{i}", EncoderLayer(d, heads, ff, dropout))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, num_classes)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("prune_mask", torch.ones(d))
        self.pruned = False

    def forward_full(self, ids, keep=False):
        B, L = ids.shape
        positions = torch.arange(L)
        h = self.drop(self.tok(ids) + self.pos(positions).unsqueeze(0))
        pad = ids.eq(PAD)
        key_bias = torch.zeros(pad.shape, dtype=h.dtype).masked_fill(pad, -1e9).view(B, 1, 1, L)
        acts = []
        for i in range(self.n_layers):
            h = getattr(self, f"layer{i}")(h, key_bias)
            if keep:
                acts.append(h)
        h = self.ln(h)
        if self.pruned:
            h = h * self.prune_mask
        if keep:
            acts[-1] = h
        keepm = (~pad).to(h.dtype).unsqueeze(-1)
        logits = self.head((h * keepm).sum(1) / keepm.sum(1).clamp_min(1.0))
        return float32_outputs((logits, h, (acts if keep else None)))

    def forward(self, ids):
        return self.forward_full(ids)[0]


class PreActResNet18(nn.Module):
    """Blocks named layer{stage}_{block}; activations: the outputs of stages 1-3 and the
    masked output of stage 4 (the prunable channels)."""

    def __init__(self, channels=1, num_classes=10, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.names, cin = [], width
        for s, w in enumerate([width, 2 * width, 4 * width, 8 * width]):
            for b in range(2):
                setattr(self, f"layer{s + 1}_{b}", PreActBlock(cin, w, 2 if (b == 0 and s > 0) else 1))
                self.names.append(f"layer{s + 1}_{b}")
                cin = w
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        self.register_buffer("prune_mask", torch.ones(cin))
        self.pruned = False

    def forward_full(self, x, keep=False):
        h, acts = self.conv1(x), []
        for i, name in enumerate(self.names):
            h = getattr(self, name)(h)
            if i % 2 == 1 and i < len(self.names) - 1:
                acts.append(h)
        if self.pruned:
            h = h * self.prune_mask.view(1, -1, 1, 1)
        acts.append(h)
        features = F.adaptive_avg_pool2d(F.relu(self.bn(h)), 1).flatten(1)
        return float32_outputs((self.fc(features), features, acts if keep else None))

    def forward(self, x):
        return self.forward_full(x)[0]


def make_model(arch, spec):
    if arch == "preact_resnet18":
        return PreActResNet18(num_classes=spec.get("num_classes", 10))
    if arch == "cnn":
        m = SmallCnn(num_classes=spec.get("num_classes", 10))
        if CHANNELS_LAST:
            m = m.to(memory_format=torch.channels_last)
        return m
    return Transformer(spec["vocab_size"], spec["max_len"], spec.get("num_classes", 2))


def set_prune_mask(model, keep):
    with torch.no_grad():
        model.prune_mask.copy_(keep)
    model.pruned = bool(model.prune_mask.min() < 1)


def load_copy(arch, spec, state):
    m = make_model(arch, spec)
    m.load_state_dict(state)
    set_prune_mask(m, m.prune_mask.clone())
    return m


# ---- the shared loops ---------------------------------------------------------------------
def make_optimizer(params, name, lr, momentum=0.9, weight_decay=0.0):
    if name == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    elif name == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(name)
    step = opt.step

    def step_then_recast(*a, **k):
        # Autocast keeps its bfloat16 copies of the weights until the outermost autocast
        # region ends, and a defense runs inside one: after a step they are stale (as
        # antidote's Trainer does after every step).
        out = step(*a, **k)
        torch.clear_autocast_cache()
        return out

    opt.step = step_then_recast
    return opt


def set_lr(opt, lr):
    for g in opt.param_groups:
        g["lr"] = lr


def cosine_lr(base, step, total):
    return base if total <= 0 else 0.5 * base * (1.0 + math.cos(math.pi * step / total))


def random_shift(images, pad, gen):
    B, _, H, W = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    out = torch.empty_like(images)
    offs = torch.randint(0, 2 * pad + 1, (B, 2), generator=gen).tolist()
    for b, (dy, dx) in enumerate(offs):
        out[b] = padded[b, :, dy:dy + H, dx:dx + W]
    return out


def check_finite(loss, where):
    if not torch.isfinite(loss):
        raise RuntimeError(f"{where}: loss is not finite")


def train_supervised(model, x, y, epochs, batch, opt_name, lr, momentum, weight_decay, schedule="cosine",
                     augment=False, gen=None, after_epoch=None):
    opt = make_optimizer(model.parameters(), opt_name, lr, momentum, weight_decay)
    n = x.shape[0]
    total = epochs * ((n + batch - 1) // batch)
    step = 0
    images = x.dim() == 4
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            if schedule == "cosine":
                set_lr(opt, cosine_lr(lr, step, total))
            xb = cut_padding(x[idx])  # text: dynamic padding, as a collator does
            if augment and images:
                xb = random_shift(xb, 2, gen)
            yb = y[idx]
            opt.zero_grad(set_to_none=True)
            with training_precision():
                logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            check_finite(loss, "train")
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
        if after_epoch is not None:
            after_epoch(model)
    return model


def cut_padding(xb):
    """Token ids cut to the batch's longest row (dynamic padding, as a collator does)."""
    if xb.dtype != torch.long or xb.dim() != 2:
        return xb
    used = (xb != PAD).any(0).nonzero()
    return xb[:, :int(used[-1]) + 1] if len(used) else xb


@torch.no_grad()
def predict_probs(model, x, batch=512):
    was = model.training
    model.eval()
    with float32():  # every evaluation in float32
        out = [torch.softmax(model(cut_padding(x[i:i + batch])), 1) for i in range(0, x.shape[0], batch)]
    model.train(was)
    return torch.cat(out)


def accuracy(probs, y):
    return (probs.argmax(1) == y).double().mean().item() if len(y) else 0.0


def monitor(cell, target):
    """The per-epoch monitor of the C++ defenses (the report's trajectory): an evaluation
    on the test sets, then back to training."""
    def run(model):
        evaluate(model, cell, target)
        model.train()
    return run


def evaluate(model, cell, target):
    cacc = accuracy(predict_probs(model, cell["test_x"]), cell["test_y"])
    p = predict_probs(model, cell["trig_x"])
    keep = cell["trig_y"] != target
    asr = (p[keep].argmax(1) == target).double().mean().item()
    return {"cacc": cacc, "asr": asr}


def clean_fit(model, x, y, batch=256):
    probs = predict_probs(model, x, batch)
    return accuracy(probs, y), -probs.gather(1, y.view(-1, 1)).clamp_min(1e-12).log().mean().item()


def freeze(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def trainable(model):
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def kl_teacher_student(t_logits, s_logits, T):
    log_p = torch.log_softmax(t_logits / T, 1)
    log_q = torch.log_softmax(s_logits / T, 1)
    return (log_p.exp() * (log_p - log_q)).sum(1).mean()


# ---- micro benchmarks ---------------------------------------------------------------------
def set_openblas_threads(n):
    """OpenBLAS's thread count at run time (the env var is read only at load)."""
    import ctypes
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "libopenblas" in line:
                ctypes.CDLL(line.split()[-1]).openblas_set_num_threads(int(n))
                return True
    return False


def bench_matmul(n, min_seconds):
    with torch.no_grad():
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.mm(a, b)
        reps, t0 = 0, now()
        while True:
            torch.mm(a, b, out=c)
            reps += 1
            el = now() - t0
            if el >= min_seconds:
                break
    return {"n": n, "reps": reps, "seconds": el, "gflops": 2.0 * n ** 3 * reps / el / 1e9}


def synthetic(arch, n, spec):
    if arch == "cnn":
        return torch.rand(n, 1, 28, 28), torch.randint(10, (n,))
    L, V = spec["max_len"], spec["vocab_size"]
    ids = torch.randint(3, V, (n, L))
    length = torch.randint(6, L + 1, (n, 1))
    ids.masked_fill_(torch.arange(L).unsqueeze(0) >= length, PAD)
    ids[:, 0] = CLS
    return ids, torch.randint(2, (n,))


def bench_train(r, channels_last=False):
    global CHANNELS_LAST
    CHANNELS_LAST = channels_last
    torch.manual_seed(1)
    arch, B, steps = r["model"], r["batch"], r["steps"]
    spec = {"vocab_size": r.get("vocab_size"), "max_len": r.get("max_len"),
            "num_classes": 10 if arch == "cnn" else 2}
    model = make_model(arch, spec)
    x, y = synthetic(arch, B * steps, spec)
    gen = torch.Generator().manual_seed(7)
    kw = dict(epochs=1, batch=B, opt_name=r["optimizer"], lr=r["lr"], momentum=r["momentum"],
              weight_decay=r["weight_decay"], schedule=r["schedule"], gen=gen)
    train_supervised(model, x[:3 * B], y[:3 * B], **kw)  # warm-up
    t0 = now()
    train_supervised(model, x, y, **kw)
    el = now() - t0
    sps = B * steps / el
    gflops = sps * r["train_flops_per_sample"] / 1e9
    CHANNELS_LAST = False
    return {"model": arch, "batch": B, "steps": steps, "seconds": el, "samples_per_s": sps, "gflops": gflops,
            "channels_last": channels_last}


def bench_eval(r):
    torch.manual_seed(1)
    arch = r["model"]
    spec = {"vocab_size": r.get("vocab_size"), "max_len": r.get("max_len"),
            "num_classes": 10 if arch == "cnn" else 2}
    model = make_model(arch, spec)
    x, _ = synthetic(arch, r["rows"], spec)
    predict_probs(model, x[:r["batch"]], r["batch"])
    t0 = now()
    predict_probs(model, x, r["batch"])
    el = now() - t0
    return {"model": arch, "rows": r["rows"], "batch": r["batch"], "seconds": el, "samples_per_s": r["rows"] / el,
            "channels_last": CHANNELS_LAST}


# ---- defense twins ------------------------------------------------------------------------
def balanced_clean(cell, n, gen, offset_per_class=0, per_class=None):
    """Rows of the clean (unpoisoned) training data, balanced over classes."""
    y, poisoned = cell["clean_y"], cell["poisoned"]
    K = int(y.max()) + 1
    pools = []
    for k in range(K):
        rows = torch.nonzero((y == k) & ~poisoned).squeeze(1)
        pools.append(rows[torch.randperm(len(rows), generator=gen)])
    if per_class is not None:
        return torch.cat([p[offset_per_class:offset_per_class + per_class] for p in pools])
    out = [pools[i % K][offset_per_class + i // K] for i in range(n)]
    return torch.stack(out)


def ft_options(text, opts, epochs_image, epochs_text):
    return dict(epochs=opts.get("epochs", epochs_text if text else epochs_image), batch=32 if text else 64,
                opt_name="adam" if text else "sgd", lr=2e-4 if text else 0.01, momentum=0.9,
                weight_decay=0.0 if text else 5e-4, schedule="cosine", augment=not text)


def kd_loss(s_out, t_out, y, T, alpha=0.3, x=None, mask_padding=False):
    """BeDKD's distillation loss: α·CE + (1-α)·(KL + feature MSE)."""
    ce = F.cross_entropy(s_out[0], y)
    kl = kl_teacher_student(t_out[0], s_out[0], T)
    if mask_padding and x is not None:  # the MSE over real tokens
        m = (x != PAD).to(s_out[1].dtype).unsqueeze(-1)
        mse = ((s_out[1] - t_out[1]).pow(2) * m).sum() / (m.sum() * s_out[1].shape[2]).clamp_min(1.0)
    else:
        mse = (s_out[1] - t_out[1]).pow(2).mean()
    return alpha * ce + (1 - alpha) * (kl + mse)


def train_mapping(cell, arch, spec, state, teacher, n_rows, epochs, lr, alpha, gen, after_epoch=None):
    """The directional mapping: a copy of the suspect trained (Adam, batch 16) to send
    n_rows balanced clean rows to the next label, distilling the frozen suspect."""
    K = spec["num_classes"]
    rows = balanced_clean(cell, 0, gen, per_class=n_rows // K)
    rows = rows[torch.randperm(len(rows), generator=gen)]
    fx, fy = cell["clean_x"][rows], (cell["clean_y"][rows] + 1) % K
    mapped = trainable(load_copy(arch, spec, state))
    opt = make_optimizer(mapped.parameters(), "adam", lr)
    for _ in range(epochs):
        for i in range(0, len(fy), 16):
            xb, yb = fx[i:i + 16], fy[i:i + 16]
            if alpha >= 1:  # cross-entropy alone: no teacher pass, and padding can be cut
                loss = F.cross_entropy(mapped(cut_padding(xb)), yb)
            else:
                with torch.no_grad():
                    t_out = teacher.forward_full(xb)
                loss = kd_loss(mapped.forward_full(xb), t_out, yb, 1.5, alpha)
            check_finite(loss, "dmm")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
        if after_epoch is not None:
            after_epoch(mapped)
    return mapped, accuracy(predict_probs(mapped, fx), fy)


def run_bedkd(cell, arch, spec, state, row, target, gen):
    text = is_text(arch)
    o = row["options"]
    sizes = row["sizes"]
    flip_epochs, akd_epochs = o.get("flip_epochs", 20), o.get("akd_epochs", 50)
    stages = []
    teacher = freeze(load_copy(arch, spec, state))
    mask_padding = text and sizes.get("mask_padding", False)  # as the C++ run reports it

    def kd(s_out, t_out, y, T, alpha=0.3, x=None):
        return kd_loss(s_out, t_out, y, T, alpha, x, mask_padding)

    st = Stage("dmm")
    # The C++ run's mapping: its learning rate, loss weight and epoch count; with
    # score_over "epochs" the training rows are ranked after every epoch.
    flip_epochs = sizes.get("flip_epochs_run", flip_epochs)
    per_epoch_ranks = sizes.get("score_over", "last") == "epochs"
    scoring = [0.0]  # seconds spent scoring training rows: counted as identification, as in C++
    t0 = now()
    pb = predict_probs(teacher, cell["train_x"]) if per_epoch_ranks else None
    scoring[0] += now() - t0
    rank_sum = torch.zeros(len(cell["train_y"]))

    def rank(mapped):
        t0 = now()
        moved = (pb - predict_probs(mapped, cell["train_x"])).abs().mean(1)
        rank_sum[torch.argsort(moved, stable=True)] += torch.arange(len(moved), dtype=torch.float)
        mapped.train()
        scoring[0] += now() - t0

    mapped, flip_acc = train_mapping(cell, arch, spec, state, teacher, sizes["flip_rows"], flip_epochs,
                                     sizes.get("flip_lr", 1e-3), sizes.get("flip_alpha", 0.3), gen,
                                     rank if per_epoch_ranks else None)
    stages.append(st.finish())
    stages[-1]["seconds"] -= scoring[0]
    scoring = scoring[0]

    st = Stage("identify")
    train_y = cell["train_y"]
    if per_epoch_ranks:
        # Mean ranks; the vote picks the label whose lowest consistent rows (as many as the
        # C++ run kept) sit lowest.
        kept = sizes["punish_rows"]
        scores = rank_sum / max(flip_epochs, 1)
        order = torch.argsort(scores, stable=True)
        order = order[pb[order].argmax(1) == train_y[order]]
        best = min(train_y.unique().tolist(), key=lambda c: scores[order[train_y[order] == c][:kept]].mean().item())
        order = order[train_y[order] == best][:kept]
    else:
        pb = predict_probs(teacher, cell["train_x"])
        pd = predict_probs(mapped, cell["train_x"])
        scores = (pb - pd).abs().mean(1)
        order = torch.argsort(scores, stable=True)
        order = order[scores[order] < 0.1][:128]
        order = order[pb[order].argmax(1) == train_y[order]][:32]
    del mapped
    if len(order) < sizes["punish_rows"]:  # the same number of punished rows as the C++ run
        order = torch.argsort(scores, stable=True)[:sizes["punish_rows"]]
    order = order[:sizes["punish_rows"]]
    stages.append(st.finish())
    stages[-1]["seconds"] += scoring

    st = Stage("akd")
    rows = balanced_clean(cell, 0, gen, offset_per_class=o.get("flip_per_class", 80),
                          per_class=sizes["trust_rows"] // spec["num_classes"])
    rows = rows[torch.randperm(len(rows), generator=gen)]
    tx, ty = cell["clean_x"][rows], cell["clean_y"][rows]
    px, py = cell["train_x"][order], cell["train_y"][order]
    student = trainable(load_copy(arch, spec, state))
    opt = make_optimizer(student.parameters(), "adam", 3e-4)
    per_epoch = sizes.get("punish_per_epoch", 0)
    stop, floor = sizes.get("punish_stop", "none"), sizes.get("punish_floor", 0.0)
    for _ in range(akd_epochs):
        for i in range(0, len(ty), 16):
            xb, yb = tx[i:i + 16], ty[i:i + 16]
            if mask_padding:  # the MSE ignores padding, so batches can be cut (as in C++)
                xb = cut_padding(xb)
            with torch.no_grad():
                t_out = teacher.forward_full(xb)
            loss = kd(student.forward_full(xb), t_out, yb, 2.5, x=xb)
            check_finite(loss, "akd trust")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
        # The C++ run's punish pass: a fresh draw of punish_per_epoch rows (0 = all),
        # each batch cut to the rows the student still gives more than the floor.
        draw = torch.arange(len(py))
        if 0 < per_epoch < len(py):
            draw = torch.sort(torch.randperm(len(py), generator=gen)[:per_epoch]).values
        for i in range(0, len(draw), 16):
            xb, yb = px[draw[i:i + 16]], py[draw[i:i + 16]]
            if mask_padding:
                xb = cut_padding(xb)
            if stop == "prob":
                with torch.no_grad():
                    student.eval()
                    p = F.softmax(student.forward_full(xb)[0], 1).gather(1, yb.unsqueeze(1)).squeeze(1)
                    still = torch.nonzero(p > floor).squeeze(1)
                    student.train()
                if len(still) == 0:
                    continue
                xb, yb = xb[still], yb[still]
            with running_batch_norm(student):
                s_out = student.forward_full(xb)
            with torch.no_grad():
                t_out = teacher.forward_full(xb)
            loss = kd(s_out, t_out, yb, 2.5, x=xb)
            check_finite(loss, "akd punish")
            opt.zero_grad(set_to_none=True)
            (-1.0 * loss).backward()
            opt.step()
            loss.item()
        evaluate(student, cell, target)  # the per-epoch monitor, as ctx.monitor in the pipeline
        student.train()
    stages.append(st.finish())
    return freeze(student), stages, {"flip_accuracy": flip_acc}


def select_flagged(scores, pred, labels, threshold, kept, cap=1024):
    """identify.cpp's selection: rows scored below the threshold, lowest first, at most
    `cap`; those whose label the suspect predicts; the label most of them carry; at most
    `kept` of them (as many as the C++ run kept)."""
    order = torch.argsort(scores.double(), stable=True)
    order = order[scores[order] < threshold][:cap]
    order = order[pred[order] == labels[order]]
    if len(order) == 0:
        return order, -1
    counts = torch.bincount(labels[order])
    best = int(counts.argmax())
    keep = order[labels[order] == best] if counts[best] >= 0.5 * len(order) else order[:0]
    return keep[:kept], best


def ntml_anchor(cell, arch, spec, state, f0, row, stages, gen):
    """NT-ML's identification stage as the C++ run reports it (the directional mapping's
    flagged rows) and the anchor it gives ML: those rows with the uniform distribution
    off the voted target, or with f_0's non-target labels."""
    sizes, r = row.get("sizes") or {}, row["resolved"]
    if "dmm" not in sizes:
        return None
    d, ident = sizes["dmm"], sizes["identify"]
    st = Stage("dmm")
    mapped, _ = train_mapping(cell, arch, spec, state, f0, d["rows"], d["epochs"], d["lr"], d["alpha"], gen)
    stages.append(st.finish())
    st = Stage("identify")
    x, y = cell["train_x"], cell["train_y"]
    pb = predict_probs(f0, x)
    scores = (pb - predict_probs(mapped, x)).abs().mean(1)
    flagged, label = select_flagged(scores, pb.argmax(1), y, ident.get("threshold", 0.003), ident["kept"])
    stages.append(st.finish())
    if len(flagged) == 0:
        return None
    ax = x[flagged]
    if r["anchor_labels"] == "uniform":
        q = torch.full((len(flagged), spec["num_classes"]), 1.0 / (spec["num_classes"] - 1))
        q[:, label] = 0.0
    else:
        q = non_target_labels(f0, ax)
    return ax, q


@torch.no_grad()
@float32()
def non_target_labels(f0, x, batch=512):
    """f_0's distribution over the classes other than its top-1 (computed before any training)."""
    q = []
    for i in range(0, len(x), batch):
        z = f0(cut_padding(x[i:i + batch]))
        q.append(torch.softmax(z.scatter(1, z.argmax(1, keepdim=True), float("-inf")), 1))
    return torch.cat(q)


class AnchorCycle:
    """The anchor's rows, batch_size at a time, cycled on a stream of their own."""

    def __init__(self, anchor, r):
        self.anchor, self.batch, self.weight = anchor, r["anchor_batch_size"], r["anchor_weight"]
        self.gen = torch.Generator().manual_seed(5)
        self.order, self.next = [], 0

    def loss(self, student):
        if self.anchor is None or self.weight <= 0:
            return 0.0
        if self.next >= len(self.order):
            perm = torch.randperm(len(self.anchor[1]), generator=self.gen)
            self.order, self.next = [perm[i:i + self.batch] for i in range(0, len(perm), self.batch)], 0
        b = self.order[self.next]
        self.next += 1
        x, q = self.anchor[0][b], self.anchor[1][b]
        with running_batch_norm(student):
            z = student(cut_padding(x))
        return self.weight * -(q * torch.log_softmax(z, 1)).sum(1).mean()


def cycled_batches(n, batch, gen):
    """An endless stream of batches: a fresh permutation of n rows after each pass."""
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            yield perm[i:i + batch]


def run_ntml(cell, arch, spec, state, row, target, gen):
    r = row["resolved"]  # every key of the C++ run, defaults resolved
    image = not is_text(arch)
    stages = []
    clean_rows = balanced_clean(cell, row["clean_samples"], gen)
    cx, cy = cell["train_x"][clean_rows], cell["clean_y"][clean_rows]
    f0 = freeze(load_copy(arch, spec, state))
    anchor = ntml_anchor(cell, arch, spec, state, f0, row, stages, gen)

    def shifted(x, on):
        return random_shift(x, 2, gen) if image and on else x

    st = Stage("nt")
    student = trainable(load_copy(arch, spec, state))
    q = non_target_labels(f0, cell["train_x"])
    opt = make_optimizer(student.parameters(), r["nt_optimizer"], r["nt_lr"], r["nt_momentum"], r["nt_weight_decay"])
    B, n = r["nt_batch_size"], len(q)
    total, step = r["nt_epochs"] * ((n + B - 1) // B), 0
    for _ in range(r["nt_epochs"]):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, B):
            b = perm[i:i + B]
            if r["nt_schedule"] == "cosine":
                set_lr(opt, cosine_lr(r["nt_lr"], step, total))
            step += 1
            x = shifted(cut_padding(cell["train_x"][b]), r["nt_augment"])
            opt.zero_grad(set_to_none=True)
            loss = -(q[b] * torch.log_softmax(student(x), 1)).sum(1).mean()
            check_finite(loss, "nt")
            loss.backward()
            opt.step()
            loss.item()
    stages.append(st.finish())

    teacher = trainable(load_copy(arch, spec, state))
    for m in (teacher, student):  # the monitor rows "after NT" (outside the stages, as in C++)
        evaluate(m, cell, target)
        m.train()
    st = Stage("ml")

    def mk(m, lr):
        return make_optimizer(m.parameters(), r["ml_optimizer"], lr, r["ml_momentum"], r["ml_weight_decay"])

    opt_s, opt_t = mk(student, r["ml_lr"]), mk(teacher, r["ml_teacher_lr"])
    T2 = r["temperature"] ** 2
    batches, anchor_ml = cycled_batches(len(cy), min(r["ml_batch_size"], len(cy)), gen), AnchorCycle(anchor, r)
    for it in range(r["ml_iterations"]):
        b = next(batches)
        x, y = shifted(cut_padding(cx[b]), r["ml_augment"]), cy[b]
        alpha_t = 0.0 if it < r["warmup"] else r["alpha_t"]
        opt_s.zero_grad(set_to_none=True)
        opt_t.zero_grad(set_to_none=True)
        zs, zt = student(x), teacher(x)
        ls = F.cross_entropy(zs, y) + r["alpha_s"] * T2 * kl_teacher_student(zt.detach(), zs, r["temperature"])
        ls = ls + anchor_ml.loss(student)
        lt = F.cross_entropy(zt, y)
        if alpha_t:
            lt = lt + alpha_t * T2 * kl_teacher_student(zs.detach(), zt, r["temperature"])
        check_finite(ls, "ml student")
        check_finite(lt, "ml teacher")
        (ls + lt).backward()
        opt_s.step()
        opt_t.step()
        ls.item(), lt.item()
        if (it + 1) % max(1, r["ml_iterations"] // 10) == 0:  # the trajectory's checkpoints
            monitor(cell, target)(student)
    stages.append(st.finish())
    for m in (teacher, student):  # the monitor rows "after ML"
        evaluate(m, cell, target)
        m.train()
    if r["consensus_iterations"] > 0:
        distilled = f0 if r["consensus_teacher"] == "suspect" else teacher
        shift = image and r["consensus_augment"]
        stages.append(consensus(cell, student, distilled, cx, cy, r, AnchorCycle(anchor, r), shift, gen))
        evaluate(student, cell, target)  # the monitor row "after consensus"
        student.train()
    return freeze(student), stages, {}


def consensus(cell, student, teacher, cx, cy, r, anchor, shift, gen):
    """Consensus distillation after ML (ntml.cpp): S distils the teacher on the training
    rows where both agree, leaving out the suspected target class (skipped unless that
    class's T-not-S count is at least min_ratio times the runner-up's), with the anchor;
    the output is the exponential moving average of S's weights."""
    st = Stage("consensus")
    pt, ps = predict_probs(teacher, cell["train_x"]), predict_probs(student, cell["train_x"])
    s_top, t_top = ps.argmax(1), pt.argmax(1)
    agree = s_top == t_top
    parted = torch.bincount(t_top[~agree], minlength=pt.shape[1])
    counts, classes = parted.topk(2)
    if counts[0].item() == 0 or counts[0].item() < r["consensus_min_ratio"] * counts[1].item():
        return st.finish()
    suspected = classes[0].item()
    rows = (agree & (t_top != suspected)).nonzero().squeeze(1)
    if len(rows) == 0:
        return st.finish()
    keep = torch.tensor([k for k in range(pt.shape[1]) if k != suspected])
    t_rows = pt[rows].clamp_min(1e-30).log()[:, keep]
    t_clean = None if shift else predict_probs(teacher, cx).clamp_min(1e-30).log()
    opt = make_optimizer(student.parameters(), r["ml_optimizer"], r["ml_lr"], r["ml_momentum"], r["ml_weight_decay"])
    decay = r["consensus_ema"]
    params = list(student.parameters())
    average = [p.detach().clone() for p in params] if decay > 0 else None
    T, T2, w = r["temperature"], r["temperature"] ** 2, r["consensus_weight"]
    Tc = r["consensus_temperature"]
    student.train()
    batches = cycled_batches(len(cy), min(r["ml_batch_size"], len(cy)), gen)
    ubatches = cycled_batches(len(rows), r["consensus_batch_size"], gen)
    for _ in range(r["consensus_iterations"]):
        b, ub = next(batches), next(ubatches)
        x, y = cx[b], cy[b]
        if shift:
            x = random_shift(x, 2, gen)
            with torch.no_grad():
                teacher.eval()
                zt = teacher(x)
        else:
            zt = t_clean[b]
        opt.zero_grad(set_to_none=True)
        zs = student(x)
        loss = F.cross_entropy(zs, y) + r["alpha_s"] * T2 * kl_teacher_student(zt, zs, T) + \
            w * Tc * Tc * kl_teacher_student(t_rows[ub], student(cell["train_x"][rows[ub]])[:, keep], Tc)
        loss = loss + anchor.loss(student)
        check_finite(loss, "consensus")
        loss.backward()
        opt.step()
        if average is not None:
            with torch.no_grad():
                torch._foreach_mul_(average, decay)
                torch._foreach_add_(average, [p.detach() for p in params], alpha=1.0 - decay)
        loss.item()
    if average is not None:
        with torch.no_grad():
            for p, a in zip(params, average):
                p.copy_(a)
    return st.finish()


def run_ft(cell, arch, spec, state, row, target, gen):
    text = is_text(arch)
    rows = balanced_clean(cell, row["clean_samples"], gen)
    cx, cy = cell["clean_x"][rows], cell["clean_y"][rows]
    st = Stage("finetune")
    model = trainable(load_copy(arch, spec, state))
    clean_fit(model, cx, cy)
    train_supervised(model, cx, cy, gen=gen, after_epoch=monitor(cell, target),
                     **ft_options(text, row["options"], 20, 10))
    clean_fit(model, cx, cy)
    model.eval()
    return freeze(model), [st.finish()], {}


@torch.no_grad()
@float32()
def channel_means(model, x, text, batch=256):
    model.eval()
    s, count = None, 0.0
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        a = model.forward_full(xb, keep=True)[2][-1].double()
        if text:  # token states [B, L, H]: real tokens only
            keep = (xb != PAD).double().unsqueeze(-1)
            part, n = (a * keep).sum((0, 1)), keep.sum().item()
        else:  # [B, C, H, W]
            part, n = a.sum((0, 2, 3)), a.shape[0] * a.shape[2] * a.shape[3]
        s = part if s is None else s + part
        count += n
    model.train()
    return s / count


def run_fp(cell, arch, spec, state, row, target, gen):
    text = is_text(arch)
    sizes = row["sizes"]
    rows = balanced_clean(cell, row["clean_samples"], gen)
    cx, cy = cell["clean_x"][rows], cell["clean_y"][rows]
    model = trainable(load_copy(arch, spec, state))
    stages = []
    st = Stage("prune")
    C = model.prune_mask.numel()
    means = channel_means(model, cx, text)
    order = torch.argsort(means, stable=True).tolist()
    acc0 = clean_fit(model, cx, cy)[0]
    step = max(1, math.ceil(row["options"].get("prune_step", 0.01) * C))
    accepted, stopped = 0, False
    for e in range(sizes["prune_evaluations"]):  # the same number of evaluations as the C++ run
        n = step * (e + 1)
        keep = torch.ones(C)
        keep[order[:n]] = 0
        set_prune_mask(model, keep)
        acc = clean_fit(model, cx, cy)[0]
        if not stopped and (acc0 - acc) / acc0 < 0.1:
            accepted = n
        else:
            stopped = True
    keep = torch.ones(C)
    keep[order[:accepted]] = 0
    set_prune_mask(model, keep)
    stages.append(st.finish())
    st = Stage("finetune")
    model.train()
    train_supervised(model, cx, cy, gen=gen, after_epoch=monitor(cell, target),
                     **ft_options(text, row["options"], 20, 10))
    clean_fit(model, cx, cy)
    stages.append(st.finish())
    return freeze(model), stages, {"pruned": accepted}


def attention_map(a, ch, mask):
    am = a.abs().pow(2).sum(ch).reshape(a.shape[0], -1)
    if mask is not None:
        am = am * mask.reshape(a.shape[0], -1).to(am.dtype)
    return am / (am.norm(2, dim=1, keepdim=True) + 1e-6)


def run_nad(cell, arch, spec, state, row, target, gen):
    text = is_text(arch)
    o = row["options"]
    rows = balanced_clean(cell, row["clean_samples"], gen)
    cx, cy = cell["clean_x"][rows], cell["clean_y"][rows]
    opts = ft_options(text, o, 10, 10)
    stages = []
    st = Stage("teacher")
    teacher = trainable(load_copy(arch, spec, state))
    t_opts = dict(opts, epochs=o.get("teacher_epochs", 10))
    train_supervised(teacher, cx, cy, gen=gen, **t_opts)
    freeze(teacher)
    clean_fit(teacher, cx, cy)
    stages.append(st.finish())

    st = Stage("distill")
    student = trainable(load_copy(arch, spec, state))
    opt = make_optimizer(student.parameters(), opts["opt_name"], opts["lr"], opts["momentum"], opts["weight_decay"])
    B, n = opts["batch"], len(cy)
    total, step = opts["epochs"] * ((n + B - 1) // B), 0
    ch = 2 if text else 1
    for _ in range(opts["epochs"]):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, B):
            idx = perm[i:i + B]
            set_lr(opt, cosine_lr(opts["lr"], step, total))
            step += 1
            x = cut_padding(cx[idx])
            if opts["augment"]:
                x = random_shift(x, 2, gen)
            y = cy[idx]
            with torch.no_grad():
                t_acts = teacher.forward_full(x, keep=True)[2]
            opt.zero_grad(set_to_none=True)
            logits, _, s_acts = student.forward_full(x, keep=True)
            betas = [500.0, 1000.0, 1000.0][-len(s_acts):]  # the last weight, the last block
            ce = F.cross_entropy(logits, y)
            mask = (x != PAD) if text else None
            at = sum(b * (attention_map(s, ch, mask) - attention_map(t, ch, mask)).pow(2).mean()
                     for b, s, t in zip(betas, s_acts[-len(betas):], t_acts[-len(betas):]))
            if text:  # the mean over the full width, as an uncut batch gives (padding adds 0)
                at = at * (x.shape[1] / cx.shape[1])
            loss = ce + at
            check_finite(loss, "nad")
            loss.backward()
            opt.step()
            ce.item(), at.item()
        monitor(cell, target)(student)
    clean_fit(student, cx, cy)
    student.eval()
    stages.append(st.finish())
    return freeze(student), stages, {}


TWINS = {"bedkd": run_bedkd, "ntml": run_ntml, "ft": run_ft, "fp": run_fp, "nad": run_nad}
TARGETS = {"fmnist-badnets": 0, "fmnist-badnets-preact": 0, "sst2-addsent": 1}


def run_cells():
    out = []
    for c in ref.get("cells", []):
        arch = c["arch"]
        cell = torch.load(c["dump"])
        cell = {k: v for k, v in cell.items()}
        if not is_text(arch):
            spec = {"num_classes": c["input"]["num_classes"]}
        else:
            spec = dict(c["input"])
        state = torch.load(os.path.join(os.path.dirname(c["dump"]), "suspect-" + c["cell"] + ".pt"))
        state = {k: v for k, v in state.items()}
        target = TARGETS.get(c["cell"], 0)
        suspect = load_copy(arch, spec, state)
        res = {"cell": c["cell"], "suspect": evaluate(suspect, cell, target), "defenses": []}
        for row in c["defenses"]:
            gen = torch.Generator().manual_seed(11)
            torch.manual_seed(11)
            t0 = now()
            with training_precision():  # evaluations inside switch it off
                model, stages, extra = TWINS[row["defense"]](cell, arch, spec, state, row, target, gen)
            total = now() - t0
            ev = evaluate(model, cell, target)
            msg = " ".join(f"{s['name']} {s['seconds']:.2f}s {s['peak_rss_mb']:.0f}MB" for s in stages)
            print(f"[{c['cell']}] {row['defense']}: {total:.1f}s CACC {100 * ev['cacc']:.1f}% "
                  f"ASR {100 * ev['asr']:.1f}% | {msg}", file=sys.stderr, flush=True)
            res["defenses"].append(dict(defense=row["defense"], seconds=total, stages=stages, **ev, **extra))
        out.append(res)
    return out


def main():
    global CHANNELS_LAST
    doc = {"tool": "pytorch", "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "blas_threads": blas_threads}
    out = args.out or os.path.join(args.indir, "python.json")

    def write():
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, out)

    if "matmul" in SECTIONS and "matmul" in ref:
        # The machine's peak at this thread count, as antidote_bench measures it: the
        # BLAS on all the threads for this section only.
        set_openblas_threads(args.threads)
        doc["matmul"] = [bench_matmul(r["n"], 0.3 if ref.get("quick") else 2.0) for r in ref["matmul"]]
        set_openblas_threads(blas_threads)
        for r in doc["matmul"]:
            print(f"matmul {r['n']}²: {r['gflops']:.1f} GFLOP/s", file=sys.stderr, flush=True)
        write()
    if "train" in SECTIONS and "train" in ref:
        doc["train"] = []
        for r in ref["train"]:
            variants = [bench_train(r, False)]
            if r["model"] == "cnn":  # channels-last where it helps
                variants.append(bench_train(r, True))
            best = max(variants, key=lambda v: v["samples_per_s"])
            best = dict(best, variants=variants)
            if r["model"] == "cnn":
                CHANNELS_LAST = best["channels_last"]
            print(f"train {r['model']}: {best['samples_per_s']:.0f} samples/s "
                  f"(channels_last {best['channels_last']})", file=sys.stderr, flush=True)
            doc["train"].append(best)
        doc["cnn_channels_last"] = CHANNELS_LAST
        write()
    if "eval" in SECTIONS and "eval" in ref:
        doc["eval"] = [bench_eval(r) for r in ref["eval"]]
        for r in doc["eval"]:
            print(f"eval {r['model']}: {r['samples_per_s']:.0f} samples/s", file=sys.stderr, flush=True)
        write()
    if "defenses" in SECTIONS and "cells" in ref:
        doc["cells"] = run_cells()
        write()
    write()
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
