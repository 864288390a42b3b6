#!/usr/bin/env bash
# report.html as a user sees it: generate a report with a tiny `antidote bench` (and one over
# two seeds), render it in headless Chromium, check that it loads without errors and fetches
# nothing, that every chart and the elements a reader relies on are in the DOM, that the
# page does not overflow horizontally at 800 and 1280 px, and that a screenshot is not blank.
# Usage: tests/report_browser_test.sh ANTIDOTE_BINARY [KEEP_DIR]
# The bench runs in a temporary directory, or in $ANTIDOTE_REPORT_TEST_OUT (reused) if set.
# Exit codes: 0 pass, 1 fail, 77 skipped (no chromium). KEEP_DIR, if given, receives
# report.html, dom.html and screenshot.png.
set -uo pipefail

ANTIDOTE=${1:?usage: report_browser_test.sh ANTIDOTE_BINARY [KEEP_DIR]}
KEEP=${2:-}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

CHROMIUM=""
for c in chromium chromium-browser google-chrome; do
  if command -v "$c" >/dev/null 2>&1; then CHROMIUM=$(command -v "$c"); break; fi
done
if [ -z "$CHROMIUM" ]; then
  echo "SKIP: chromium is not installed (apt-get install chromium)"
  exit 77
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# ---- 1. a report from a tiny bench: every registered defense, so every chart has data.
DEFENSES=$("$ANTIDOTE" list 2>/dev/null | "$PY" -c '
import sys
names, inside = [], False
for line in sys.stdin:
    if not line.startswith(" "):
        inside = line.strip().rstrip(":") == "defenses"
    elif inside and line.split():
        names.append(line.split()[0])
# Short schedules: the page, not the defenses, is under test here.
short = {"none": "none", "bedkd": "{name: bedkd, flip_per_class: 20, flip_epochs: 2, trust_per_class: 60, akd_epochs: 3}",
         "ntml": "{name: ntml, nt_epochs: 1, ml_iterations: 150, warmup: 20, consensus_iterations: 150}",
         "ft": "{name: ft, epochs: 3}", "fp": "fp", "nad": "{name: nad, teacher_epochs: 2}"}
picked = [n for n in short if n in names] or ["none", "ft"]
if "none" not in picked: picked.insert(0, "none")
print(", ".join(short[n] for n in picked))')
echo "defenses: $DEFENSES"
cat > "$WORK/tiny.yaml" <<EOF
seed: 0
threads: 2
dataset: {name: fmnist, train_limit: 2000, test_limit: 500}
train: {epochs: 1}
attacks: [{name: badnets, poison_rate: 0.1, target: 0}]
defenses: [$DEFENSES]
EOF
# ANTIDOTE_REPORT_TEST_OUT: a bench directory to reuse (finished cells are not redone).
OUT=${ANTIDOTE_REPORT_TEST_OUT:-$WORK/out}
START=$(date +%s)
"$ANTIDOTE" bench --config "$WORK/tiny.yaml" --out "$OUT" -q > "$WORK/bench.log" 2>&1 || {
  tail -30 "$WORK/bench.log"
  fail "antidote bench exited non-zero"
}
echo "bench took $(( $(date +%s) - START )) s"
REPORT="$OUT/report.html"
[ -s "$REPORT" ] || fail "no report.html written"
[ -n "$KEEP" ] && mkdir -p "$KEEP" && cp "$REPORT" "$KEEP/report.html"

# A grid over two seeds (cheap defenses): the report's "over seeds" view.
cat > "$WORK/seeds.yaml" <<EOF
seed: [0, 1]
threads: 2
dataset: {name: fmnist, train_limit: 1000, test_limit: 300}
train: {epochs: 1}
attacks: [{name: badnets, poison_rate: 0.1, target: 0}]
defenses: [none, {name: ft, epochs: 1}]
EOF
"$ANTIDOTE" bench --config "$WORK/seeds.yaml" --out "$WORK/seeds" -q > "$WORK/seeds.log" 2>&1 || {
  tail -30 "$WORK/seeds.log"
  fail "antidote bench (two seeds) exited non-zero"
}
SEEDS_REPORT="$WORK/seeds/report.html"
[ -n "$KEEP" ] && cp "$SEEDS_REPORT" "$KEEP/seeds-report.html"

# ---- 2. the file itself: self-contained, thumbnails are valid PNGs.
"$PY" - "$REPORT" <<'EOF' || fail "report.html is not self-contained or has a broken image"
import base64, re, struct, sys, zlib
html = open(sys.argv[1], encoding="utf-8").read()
bad = [s for s in ("<script", "http://", "https://", "<link", "@import", "url(") if s in html]
assert not bad, f"forbidden in report.html: {bad}"
for attr in re.findall(r'(?:src|href)="([^"]*)"', html):
    # Inline images, anchors, and links to the purified models beside the report (followed
    # only when clicked, never fetched while the page loads).
    ok = attr.startswith("data:image/png;base64,") or attr.startswith("#") or re.fullmatch(r"models/[\w.+-]+", attr)
    assert ok, f"external reference: {attr[:60]}"
uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
assert uris, "no thumbnails"
for u in uris:
    png = base64.b64decode(u, validate=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "bad PNG signature"
    pos, idat, ihdr = 8, b"", None
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos:pos + 4]); kind = png[pos + 4:pos + 8]; data = png[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", png[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + data) == crc, "bad CRC"
        if kind == b"IHDR": ihdr = struct.unpack(">IIBBBBB", data)
        if kind == b"IDAT": idat += data
        pos += 12 + n
    w, h, depth, colour = ihdr[:4]
    ch = {0: 1, 2: 3}[colour]
    assert len(zlib.decompress(idat)) == h * (1 + w * ch), "bad IDAT size"
print(f"report.html: {len(html)} bytes, {len(uris)} thumbnails decode")
EOF

# ---- 3. headless Chromium: the DOM after loading, and what was fetched while loading.
chrome() {
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
    --user-data-dir="$(mktemp -d -p "$WORK")" "$@"
}
URL="file://$REPORT"
chrome --enable-logging=stderr --v=1 --dump-dom "$URL" > "$WORK/dom.html" 2> "$WORK/chrome.log" ||
  { tail -20 "$WORK/chrome.log"; fail "chromium --dump-dom failed"; }
[ -n "$KEEP" ] && cp "$WORK/dom.html" "$KEEP/dom.html"
"$PY" - "$WORK/dom.html" "$WORK/chrome.log" "$URL" <<'EOF' || fail "the page did not load cleanly in chromium"
import re, sys
dom = open(sys.argv[1], encoding="utf-8", errors="replace").read()
log = open(sys.argv[2], encoding="utf-8", errors="replace").read()
url = sys.argv[3]
assert "<html" in dom and 'id="end"' in dom, "the DOM is incomplete (no footer): the page did not load"
for section in ("summary", "results", "charts", "bedkd", "ntml", "examples", "cost", "provenance"):
    assert f'<section id="{section}"' in dom, f"section {section} missing from the DOM"
charts = {}
for kind in re.findall(r'<svg class="chart" data-chart="([a-z]+)"', dom):
    charts[kind] = charts.get(kind, 0) + 1
print("charts in the DOM:", charts)
needed = ["asr", "cacc", "cost", "training"]
if "data-defense=\"bedkd\"" in dom: needed += ["trajectory", "identification"]
for kind in needed:
    assert charts.get(kind), f"chart {kind} missing from the DOM"
# What a reader needs without hovering: the verdicts' reasons, the pass bands, the per-class
# confusions, the CACC axis scaled to the decision, links to the purified models.
for marker in ('<ul class="verdicts">', '<rect class="pass"', '<section id="confusion"', '<section id="training"',
               '<table class="confusion"', 'href="models/'):
    assert marker in dom, f"{marker} missing from the DOM"
cacc_axes = re.findall(r'data-chart="cacc"[^>]*data-axis="([0-9]+)-([0-9]+)"', dom)
assert cacc_axes and all(int(lo) > 0 for lo, hi in cacc_axes), f"the CACC axis is not scaled: {cacc_axes}"
assert "In progress" not in dom, "a finished bench's report says it is in progress"
assert "data-defense=\"none\"" in dom, "results table has no suspect row"
assert "<img class=\"thumb" in dom, "no thumbnails in the DOM"
# Nothing but the page itself may be loaded: no file, and no src/href that is not inline. (The
# browser's own background requests, e.g. gaia, are not the page's and are ignored.)
fetched = [u for u in re.findall(r"URLLoader::Start: (\S+)", log) if u != url]
assert not fetched, f"the page fetched {fetched}"
refs = [a for a in re.findall(r'(?:src|href)="([^"]*)"', dom)
        if not (a.startswith("data:image/") or a.startswith("#") or re.fullmatch(r"models/[\w.+-]+", a))]
assert not refs, f"the DOM references {refs[:5]}"
# A console message from the page (a failed load, a parse error) is an error.
errors = [l for l in log.splitlines() if re.search(r"CONSOLE|Failed to load resource|Uncaught", l)]
assert not errors, "errors while loading:\n" + "\n".join(errors[:10])
EOF

# ---- 4. no horizontal overflow at 800 and 1280 px, for both reports. A copy of the page
# gets a measuring script (the report itself has none): after layout it writes the page's
# scroll width, its viewport width and the widest elements into the DOM.
overflow() {  # REPORT WIDTH NAME
  local page="$WORK/measure-$3-$2.html"
  "$PY" - "$1" "$page" <<'EOF'
import sys
html = open(sys.argv[1], encoding="utf-8").read()
probe = """<script>window.addEventListener('load', function () {
  var d = document.documentElement, out = [];
  document.querySelectorAll('body *').forEach(function (e) {
    var r = e.getBoundingClientRect();
    if (r.right > d.clientWidth + 1 && !e.closest('.scroll'))
      out.push(e.tagName + ' ' + (e.id || e.getAttribute('class') || '') + ' ' + Math.round(r.right));
  });
  var p = document.createElement('pre'); p.id = 'measured';
  p.textContent = 'scroll=' + d.scrollWidth + ' client=' + d.clientWidth + ' wide=' + out.slice(0, 5).join(' | ');
  document.body.appendChild(p);
});</script>"""
open(sys.argv[2], "w", encoding="utf-8").write(html.replace("</body>", probe + "</body>"))
EOF
  chrome --window-size="$2",1000 --virtual-time-budget=3000 --dump-dom "file://$page" > "$page.dom" 2>/dev/null ||
    fail "chromium could not lay out $3 at $2 px"
  "$PY" - "$page.dom" "$3" "$2" <<'EOF' || fail "the $3 report overflows at $2 px"
import re, sys
dom = open(sys.argv[1], encoding="utf-8", errors="replace").read()
m = re.search(r'<pre id="measured">scroll=(\d+) client=(\d+) wide=(.*?)</pre>', dom, re.S)
assert m, "the measurement did not run"
scroll, client, wide = int(m.group(1)), int(m.group(2)), m.group(3)
print(f"{sys.argv[2]} at {sys.argv[3]} px: page {scroll} px wide in a {client} px viewport")
assert scroll <= client, f"horizontal overflow: {scroll} > {client}; widest: {wide}"
EOF
}
for width in 800 1280; do
  overflow "$REPORT" "$width" bench
  overflow "$SEEDS_REPORT" "$width" seeds
done
grep -q '<section id="seeds"' "$SEEDS_REPORT" || fail "the two-seed report has no 'over seeds' section"

# ---- 5. screenshots that are not blank.

if [ -n "$KEEP" ]; then
  for width in 800 1280; do
    chrome --screenshot="$KEEP/screenshot-$width.png" --window-size="$width",2400 "$URL" > /dev/null 2>&1
    chrome --screenshot="$KEEP/seeds-$width.png" --window-size="$width",1600 "file://$SEEDS_REPORT" > /dev/null 2>&1
  done
fi
chrome --screenshot="$WORK/shot.png" --window-size=1280,2000 "$URL" > "$WORK/shot.log" 2>&1 ||
  { tail -20 "$WORK/shot.log"; fail "chromium --screenshot failed"; }
[ -s "$WORK/shot.png" ] || fail "no screenshot written"
[ -n "$KEEP" ] && cp "$WORK/shot.png" "$KEEP/screenshot.png"
"$PY" - "$WORK/shot.png" <<'EOF' || fail "the screenshot is blank"
import struct, sys, zlib
png = open(sys.argv[1], "rb").read()
assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat = 8, b""
while pos < len(png):
    (n,) = struct.unpack(">I", png[pos:pos + 4]); kind = png[pos + 4:pos + 8]; data = png[pos + 8:pos + 8 + n]
    if kind == b"IHDR": w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data)
    if kind == b"IDAT": idat += data
    pos += 12 + n
assert depth == 8 and interlace == 0 and colour in (2, 6), f"unexpected PNG format {depth} {colour} {interlace}"
bpp = 3 if colour == 2 else 4
raw, stride = zlib.decompress(idat), w * bpp
rows, prev, i = [], bytearray(stride), 0
for _ in range(h):
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0; b = prev[x]; c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(bytes(line)); prev = line
total = nonwhite = green = red = 0
colours = set()
for line in rows:
    for x in range(0, stride, bpp * 2):  # every other pixel is plenty
        r, g, b = line[x], line[x + 1], line[x + 2]
        total += 1
        if r < 245 or g < 245 or b < 245: nonwhite += 1
        if g > r + 40 and g > b + 20: green += 1
        if r > g + 60 and r > b + 60: red += 1
        colours.add((r >> 4, g >> 4, b >> 4))
frac = nonwhite / total
print(f"screenshot {w}x{h}: {100 * frac:.1f}% non-white, {len(colours)} colour bins, green {green}, red {red}")
assert frac > 0.03, "screenshot is (nearly) blank"
assert len(colours) > 8, "screenshot has almost no colours"
EOF
echo "PASS: report.html renders in $("$CHROMIUM" --version 2>/dev/null | head -1)"
