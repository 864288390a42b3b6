#!/usr/bin/python3
"""The "PreAct-ResNet-18 defense stages" block of bench/RESULTS.md, from bench/preact.sh's
runs: OUT/fp32 and OUT/bf16 (antidote.json + python.json each) and OUT/peaks.json
(precision_twin.py --peaks-only).

Usage: preact_report.py --dir OUT [--out bench/RESULTS.md] [--command "bench/preact.sh 2"]
"""
import argparse
import datetime
import json
import os

import section

ap = argparse.ArgumentParser()
ap.add_argument("--dir", required=True)
ap.add_argument("--out", default="bench/RESULTS.md")
ap.add_argument("--command", default="bench/preact.sh")
args = ap.parse_args()
PRECISIONS = ("fp32", "bf16")


def load(*parts):
    with open(os.path.join(args.dir, *parts)) as f:
        return json.load(f)


def forward_macs(width=64, size=28, channels=1, classes=10):
    """Multiply-adds of one PreAct-ResNet-18 forward pass (convolutions and the head)."""
    macs, cin, h = size * size * width * 9 * channels, width, size
    for stage, c in enumerate([width, 2 * width, 4 * width, 8 * width]):
        for block in range(2):
            stride = 2 if block == 0 and stage > 0 else 1
            h = (h - 1) // stride + 1
            macs += h * h * c * (cin + c) * 9 + (h * h * c * cin if stride != 1 or cin != c else 0)
            cin = c
    return macs + cin * classes


FORWARD = 2.0 * forward_macs()  # FLOPs; a training pass (forward + backward) counts 3 of them
peaks = load("peaks.json")
peak = {p: max(peaks[f"matmul_{p}"], peaks[f"conv_{p}"]) for p in PRECISIONS}
runs = {p: (load(p, "antidote.json"), load(p, "python.json")) for p in PRECISIONS}


def by(items, key, value):
    return next((it for it in items or [] if it.get(key) == value), {})


def share(flops, seconds, p):
    """% of the peak; "†" where that would exceed it: the work was not the twin's (FP's
    prune stage, where antidote runs the trunk once and re-applies the masked head)."""
    if not seconds:
        return "–"
    fraction = flops / seconds / 1e9 / peak[p]
    return "†" if fraction > 1 else f"{100 * fraction:.0f}%"


def stage_rows(p):
    """(defense, stage) → (antidote s, PyTorch s, FLOPs) at precision p."""
    a, t = runs[p]
    out = {}
    for d in a["cells"][0]["defenses"]:
        td = by(t["cells"][0]["defenses"], "defense", d["defense"])
        for s in d["stages"]:
            ts = by(td.get("stages"), "name", s["name"])
            flops = FORWARD * (3 * ts.get("grad_samples", 0) + ts.get("nograd_samples", 0))
            out[(d["defense"], s["name"])] = (s["seconds"], ts.get("seconds"), flops)
    return out


rows = {p: stage_rows(p) for p in PRECISIONS}
a32 = runs["fp32"][0]
cell = a32["cells"][0]
L = []
w = L.append
w("<!-- preact: begin -->")
w("## PreAct-ResNet-18: defense stages in float32 and bfloat16")
w("")
w(f"Generated {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M')} by `{args.command}` "
  f"({a32['machine']['torch_threads']} threads; {a32['machine']['cpu']}; load average at the start "
  f"{a32['machine']['load_average_start']}, at the end {runs['bf16'][0]['machine']['load_average_end']}). "
  f"Fashion-MNIST badnets, `preact_resnet18` width 64, {cell['train']['rows']} training rows, the suspect trained "
  f"{cell['train']['epochs']} epochs at each precision; antidote_bench runs every defense through the pipeline "
  "API with `--precision`, bench/python/twin.py the same loops at the same sizes, under "
  "`torch.cpu.amp.autocast(dtype=torch.bfloat16)` for bf16 (every evaluation in float32 on both sides). "
  "A training sample costs about 2.7 GFLOP here, so each stage runs at a fraction of its default size "
  "(options below): the table compares implementations, not the defenses' efficacy.")
w("")
w(f"% peak: the stage's arithmetic (the twin counts the samples through each forward pass: "
  f"{FORWARD / 1e9:.2f} GFLOP without gradients, three times that with) over its seconds, against the peak at "
  f"that precision (PyTorch, the faster of a 2048² matmul and a 128-channel 3×3 convolution): float32 "
  f"{peak['fp32']:.0f}, bfloat16 {peak['bf16']:.0f} GFLOP/s (bf16 matmul {peaks['matmul_bf16']:.0f}). The "
  "evaluations inside a stage run in float32 in both modes, so a bf16 stage with many of them sits lower.")
w("")
w("| defense | stage | GFLOP | fp32 antidote s (% peak) | PyTorch s (% peak) | ratio | "
  "bf16 antidote s (% peak) | PyTorch s (% peak) | ratio | antidote bf16 speed-up |")
w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (defense, stage), (s32, t32, f32) in rows["fp32"].items():
    s16, t16, f16 = rows["bf16"].get((defense, stage), (None, None, 0))
    cells = [defense, stage, f"{f32 / 1e9:,.0f}"]
    for p, s, t, f in (("fp32", s32, t32, f32), ("bf16", s16, t16, f16)):
        cells += [f"{s:.1f} ({share(f, s, p)})" if s else "–", f"{t:.1f} ({share(f, t, p)})" if t else "–",
                  f"**{s / t:.2f}**" if s and t else "–"]
    cells.append(f"{s32 / s16:.2f}×" if s16 else "–")
    w("| " + " | ".join(cells) + " |")
tot = {p: [sum(v[i] or 0 for v in rows[p].values()) for i in range(2)] for p in PRECISIONS}
w(f"| **all** | | | {tot['fp32'][0]:.1f} | {tot['fp32'][1]:.1f} | **{tot['fp32'][0] / tot['fp32'][1]:.2f}** | "
  f"{tot['bf16'][0]:.1f} | {tot['bf16'][1]:.1f} | **{tot['bf16'][0] / tot['bf16'][1]:.2f}** | "
  f"{tot['fp32'][0] / tot['bf16'][0]:.2f}× |")
w("")
w("† antidote did less arithmetic than the twin: FP's prune stage runs the network up to the pruned layer "
  "once and re-applies only the masked head at each pruning step; the twin reruns the whole network.")
w("")
w("Options: " + "; ".join(f"{d['defense']} " + ", ".join(f"{k} {v}" for k, v in d["options"].items())
                          for d in cell["defenses"]) + ".")
w("")
w("| precision | suspect CACC / ASR (antidote) | " + " | ".join(d["defense"] for d in cell["defenses"]) + " |")
w("|---|---|" + "---|" * len(cell["defenses"]))
for p in PRECISIONS:
    c = runs[p][0]["cells"][0]
    tc = runs[p][1]["cells"][0]
    pct = lambda e: f"{100 * e['cacc']:.1f} / {100 * e['asr']:.1f}"  # noqa: E731
    w(f"| {p} | {pct(c['suspect'])} | " + " | ".join(
        f"{pct(d)} (twin {pct(by(tc['defenses'], 'defense', d['defense']))})" for d in c["defenses"]) + " |")
w("")
w("CACC / ASR (%) after each defense on the cell's 500 test rows; the twin's differ by its own random draws.")
w("<!-- preact: end -->")
section.replace(args.out, "preact", "\n".join(L))
print("\n".join(L))
