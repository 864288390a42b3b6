#!/usr/bin/python3
"""Merge antidote_bench's and twin.py's JSON into bench/RESULTS.md.

Usage: report.py --dir OUT --out bench/RESULTS.md [--command "bench/run.sh ..."]
OUT holds antidote.json + python.json (main run), refblas/ (the same with the
reference BLAS) and oversub-T-B/ (torch threads T x OpenBLAS threads B).
"""
import argparse
import datetime
import glob
import json
import os

import section

ap = argparse.ArgumentParser()
ap.add_argument("--dir", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--command", default="bench/run.sh")
args = ap.parse_args()


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio(a_time, p_time):
    """antidote time / PyTorch time (< 1: antidote is faster)."""
    if not a_time or not p_time:
        return "–"
    return f"**{a_time / p_time:.2f}**"


def by(items, key, value):
    for it in items or []:
        if it.get(key) == value:
            return it
    return None


A = load(os.path.join(args.dir, "antidote.json")) or {}
P = load(os.path.join(args.dir, "python.json")) or {}
m = A.get("machine", {})
lines = []
w = lines.append
w("# antidote vs PyTorch-Python: speed on this machine")
w("")
w(f"Generated {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by `{args.command}` "
  "(bench/antidote_bench.cpp against bench/python/twin.py, run one after the other in the same invocation).")
w("")
quick = A.get("quick")
load_start, load_end = m.get("load_average_start", "?"), m.get("load_average_end", "?")
w(f"- **Machine**: {m.get('cpu', '?')}, {m.get('cores', '?')} cores; LibTorch {m.get('libtorch', '?')} "
  f"(Debian), PyTorch {P.get('torch', '?')} (Debian python3-torch)")
w(f"- **Threads**: torch {m.get('torch_threads', '?')} (antidote) / {P.get('torch_threads', '?')} (PyTorch), "
  f"OpenBLAS {m.get('blas_threads', '?')} / {P.get('blas_threads', '?')}; "
  f"OPENBLAS_CORETYPE = `{m.get('openblas_coretype') or '(unset, as the machine sets it)'}`")
w(f"- **BLAS mapped**: `{m.get('blas_library', '?')}`")
w(f"- **Load average** (1, 5, 15 min) at the start of the C++ run: {load_start}; at its end: {load_end}")
if quick:
    w("- **QUICK RUN** (`--quick`: tiny step counts and epochs; smoke test, not a measurement)")
try:
    if float(str(load_start).split()[0]) > 2.5 or float(str(load_end).split()[0]) > 2.5:
        w("- **WARNING: the machine was busy** (1-minute load above 2.5 on a 2-core machine: other jobs were "
          "compiling and training). Absolute figures are depressed and noisy; the antidote/PyTorch ratios "
          "are less affected but still noisy. Re-run `bench/run.sh` on an idle machine.")
except ValueError:
    pass
w("")
w("Ratio = antidote time / PyTorch time for the same work (below 1: antidote is faster; the target for "
  "defense stages: ≤ 0.5).")
w("")

# ---- matmul -------------------------------------------------------------------------------
peak = None
if A.get("matmul"):
    w("## float32 matmul")
    w("")
    w("| n | antidote GFLOP/s | PyTorch GFLOP/s | ratio |")
    w("|---|---:|---:|---:|")
    for r in A["matmul"]:
        p = by(P.get("matmul"), "n", r["n"])
        w(f"| {r['n']}² | {fmt(r['gflops'])} | {fmt(p and p['gflops'])} | "
          f"{ratio(1 / r['gflops'], p and 1 / p['gflops'])} |")
        if r["n"] == 2048:
            peak = r["gflops"]
    w("")

# ---- training steps -----------------------------------------------------------------------
if A.get("train"):
    w("## Training steps (forward + backward + optimizer, `train_supervised`)")
    w("")
    w("FLOPs per sample counted analytically (convolutions, linear layers, attention products; "
      "training = 3 × forward, minus the first convolution's input gradient); "
      f"peak = the 2048² matmul above ({fmt(peak)} GFLOP/s).")
    w("")
    w("| model | batch | optimizer | steps | MFLOP/sample | antidote samples/s | GFLOP/s | % peak | "
      "PyTorch samples/s | GFLOP/s | ratio |")
    w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in A["train"]:
        p = by(P.get("train"), "model", r["model"])
        extra = ""
        if p and r["model"] == "cnn":
            extra = " (channels-last)" if p.get("channels_last") else " (NCHW; channels-last was slower)"
        name = r["model"] + (f" (vocab {r['vocab_size']}, len {r['max_len']})" if "vocab_size" in r else " (1×28×28)")
        w(f"| {name} | {r['batch']} | {r['optimizer']} {r['lr']:g} | {r['steps']} | "
          f"{r['train_flops_per_sample'] / 1e6:.1f} | {fmt(r['samples_per_s'])} | {fmt(r['gflops'])} | "
          f"{100 * r['peak_fraction']:.0f}% | {fmt(p and p['samples_per_s'])}{extra} | {fmt(p and p['gflops'])} | "
          f"{ratio(1 / r['samples_per_s'], p and 1 / p['samples_per_s'])} |")
    for p in P.get("train", []):
        if len(p.get("variants", [])) > 1:
            v = ", ".join(f"{'channels-last' if x['channels_last'] else 'NCHW'} {x['samples_per_s']:.0f}"
                          for x in p["variants"])
            w("")
            w(f"PyTorch {p['model']} variants (samples/s): {v}.")
    w("")
    w("The Transformer's rows have random lengths (6 to max_len tokens, the rest [PAD]). The twin cuts each "
      "batch to its longest row (dynamic padding, as a collator does; with 32 rows of uniform lengths that "
      "is nearly max_len). antidote's `train_supervised` groups rows of similar length into a batch and cuts "
      "it (`TrainBatches`, `train.group_by_length`, on by default). % peak counts the FLOPs of the full "
      "max_len rows, so for the Transformer it overstates the arithmetic done.")
    w("")

# ---- evaluation ---------------------------------------------------------------------------
if A.get("eval"):
    w("## Evaluation (`predict_probs`, no grad, softmax)")
    w("")
    w("| model | rows | batch | antidote samples/s | % peak | PyTorch samples/s | ratio |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for r in A["eval"]:
        p = by(P.get("eval"), "model", r["model"])
        w(f"| {r['model']} | {r['rows']} | {r['batch']} | {fmt(r['samples_per_s'])} | "
          f"{100 * r['peak_fraction']:.0f}% | {fmt(p and p['samples_per_s'])} | "
          f"{ratio(1 / r['samples_per_s'], p and 1 / p['samples_per_s'])} |")
    w("")
    w("The Transformer's rows have random lengths (6 to max_len tokens, the rest [PAD]). Both sides skip "
      "trailing padding: the twin cuts each batch to its longest row (dynamic padding, as a collator does), "
      "antidote also sorts the rows by length first, so each batch holds rows of similar length. % peak "
      "counts the FLOPs of the padded rows, so for the Transformer it overstates the arithmetic done.")
    w("")

# ---- defenses -----------------------------------------------------------------------------
if A.get("cells"):
    w("## Defense stages")
    w("")
    w("Each defense runs through the pipeline API (`make_defense` + `make_defense_context`, monitor on the "
      "test subsets included where the defense calls it: BeDKD's AKD evaluates after every epoch). The twin "
      "loads the same encoded cell and the same suspect weights (dumped by antidote_bench) and runs the same "
      "loops at the same sizes. Peak RSS is per stage (VmHWM reset at each stage start, both sides).")
    w("")
    for c in A["cells"]:
        pc = by(P.get("cells"), "cell", c["cell"]) or {}
        t = c["train"]
        w(f"### {c['cell']} ({c['arch']}, {t['rows']} training rows)")
        w("")
        w(f"Suspect: trained {t['epochs']} epoch(s), batch {t['batch']}, {t['optimizer']} in {t['seconds']:.1f} s "
          f"(peak RSS {t['peak_rss_mb']:.0f} MB); CACC {100 * c['suspect']['cacc']:.1f}%, "
          f"ASR {100 * c['suspect']['asr']:.1f}%.")
        w("")
        w("| defense | options | stage | antidote s | RSS MB | PyTorch s | RSS MB | ratio |")
        w("|---|---|---|---:|---:|---:|---:|---:|")
        for d in c["defenses"]:
            pd = by(pc.get("defenses"), "defense", d["defense"]) or {}
            opts = ", ".join(f"{k} {v}" for k, v in d.get("options", {}).items())
            for s in d["stages"]:
                ps = by(pd.get("stages"), "name", s["name"]) or {}
                w(f"| {d['defense']} | {opts} | {s['name']} | {s['seconds']:.2f} | {s['peak_rss_mb']:.0f} | "
                  f"{fmt(ps.get('seconds'), 2)} | {fmt(ps.get('peak_rss_mb'), 0)} | "
                  f"{ratio(s['seconds'], ps.get('seconds'))} |")
                opts = ""
            w(f"| {d['defense']} | | **total** | {d['seconds']:.2f} | | {fmt(pd.get('seconds'), 2)} | | "
              f"{ratio(d['seconds'], pd.get('seconds'))} |")
        w("")
        w("Accuracy after each defense (test subset; the twin's numbers differ by its own random draws):")
        w("")
        w("| defense | antidote CACC | ASR | PyTorch CACC | ASR |")
        w("|---|---:|---:|---:|---:|")
        for d in c["defenses"]:
            pd = by(pc.get("defenses"), "defense", d["defense"]) or {}
            pct = lambda v: "–" if v is None else f"{100 * v:.1f}%"  # noqa: E731
            w(f"| {d['defense']} | {pct(d['cacc'])} | {pct(d['asr'])} | {pct(pd.get('cacc'))} | {pct(pd.get('asr'))} |")
        w("")
    w("Stage sizes: BeDKD DMM = batch 16, Adam; images: flip_per_class 80 × K rows, α = 0.3; text: the whole "
      "clean budget (80 + 320) × K rows, cross-entropy alone; identify = `predict_probs` passes over the "
      "training set (batch 512): images two, text one per DMM epoch, ranked (that time counts here, not in "
      "the DMM); AKD = trust_per_class 320 × K rows + a punish pass (images: 128 rows drawn per epoch from "
      "≤ 1024; text: 16 drawn from ≤ 64), each batch cut to the rows still above the "
      "floor, batch 16, plus the monitor evaluation. NT-ML: NT = one epoch over the training set (batch 128 "
      "images / 32 text); ML = `ml_iterations` steps of two models (batch 64 / 32); control off. FT, FP, NAD: "
      "500 clean rows, their default recipes (images: SGD, batch 64, 2-pixel shifts; text: Adam, batch 32). "
      "Text training batches: antidote groups rows of similar length and cuts each batch to its longest row; "
      "the twin cuts each batch of random rows to its longest row. BeDKD's text AKD takes its feature MSE "
      "over real tokens (`mask_padding`, on in the text recipe) on both sides.")
    w("")

# ---- BLAS ---------------------------------------------------------------------------------
RA = load(os.path.join(args.dir, "refblas", "antidote.json"))
RP = load(os.path.join(args.dir, "refblas", "python.json"))
if RA:
    w("## BLAS: reference BLAS vs OpenBLAS (before / after)")
    w("")
    w(f"The same binaries, once with `LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/blas` (this process only: "
      f"libblas.so.3 resolves to Debian's reference BLAS; nothing on the system changes) and once as installed "
      f"(`update-alternatives` → OpenBLAS pthread). Mapped in the reference run: `{RA['machine'].get('blas_library')}`.")
    w("")
    w("| work | threads | antidote, reference BLAS | antidote, OpenBLAS | speed-up | PyTorch, reference | "
      "PyTorch, OpenBLAS | speed-up |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    th = m.get("torch_threads")
    for r in RA.get("matmul", []):
        o = by(A.get("matmul"), "n", r["n"])
        pr, po = by((RP or {}).get("matmul"), "n", r["n"]), by(P.get("matmul"), "n", r["n"])
        w(f"| matmul {r['n']}² (GFLOP/s) | {th} | {fmt(r['gflops'])} | {fmt(o and o['gflops'])} | "
          f"{fmt(o and o['gflops'] / r['gflops'])}× | {fmt(pr and pr['gflops'])} | {fmt(po and po['gflops'])} | "
          f"{fmt(pr and po and po['gflops'] / pr['gflops'])}× |")
    for r in RA.get("train", []):
        o = by(A.get("train"), "model", r["model"])
        pr, po = by((RP or {}).get("train"), "model", r["model"]), by(P.get("train"), "model", r["model"])
        w(f"| train {r['model']} (samples/s) | {th} | {fmt(r['samples_per_s'])} | {fmt(o and o['samples_per_s'])} | "
          f"{fmt(o and o['samples_per_s'] / r['samples_per_s'])}× | {fmt(pr and pr['samples_per_s'])} | "
          f"{fmt(po and po['samples_per_s'])} | {fmt(pr and po and po['samples_per_s'] / pr['samples_per_s'])}× |")
    w("")
    w("The small CNN's convolutions go through oneDNN (mkldnn), not the BLAS, so only its linear layers "
      "change; every Linear layer and attention product of the Transformer calls sgemm.")
    w("")

# ---- oversubscription ---------------------------------------------------------------------
runs = sorted(glob.glob(os.path.join(args.dir, "oversub-*")))
if runs:
    w("## Oversubscription: torch threads × OpenBLAS threads")
    w("")
    w("`configure_threads(n)` gives LibTorch n threads and OpenBLAS one (`torch::set_num_threads` does not limit OpenBLAS's own pool, and the two pools fight over the cores). "
      "Here each pair is forced (`--blas-threads` after `configure_threads`; `OPENBLAS_NUM_THREADS` for the twin).")
    w("")
    w("| torch threads | OpenBLAS threads | antidote CNN samples/s | antidote Transformer samples/s | "
      "PyTorch CNN | PyTorch Transformer |")
    w("|---:|---:|---:|---:|---:|---:|")
    for d in runs:
        a, p = load(os.path.join(d, "antidote.json")), load(os.path.join(d, "python.json")) or {}
        if not a:
            continue
        t, b = os.path.basename(d).split("-")[1:3]
        cells = []
        for src in (a, p):
            for model in ("cnn", "transformer"):
                r = by(src.get("train"), "model", model)
                cells.append(fmt(r and r["samples_per_s"]))
        w(f"| {t} | {b} | " + " | ".join(cells) + " |")
    w("")

# The marked sections other scripts own (bench/distributed.sh, bench/precision.sh,
# bench/preact.sh) stay as they were.
try:
    for block in section.blocks(open(args.out).read()):
        w("")
        w(block)
except FileNotFoundError:
    pass

with open(args.out + ".tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
os.replace(args.out + ".tmp", args.out)
print(f"wrote {args.out}")
