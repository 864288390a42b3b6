// report.html: one self-contained page, inline CSS and SVG only.
// No <script>, no fonts, images or style sheets fetched: thumbnails are PNG data URIs
// encoded here with zlib, charts are inline SVG drawn here. A person reads it offline.
//
// Sections (each a <section id=...>): summary, results, charts (ASR and CACC bars per
// dataset × attack), bedkd (AKD trajectory, identification histogram), trajectories (other
// defenses that logged one), ntml (stage table, checks, verdict), examples (what the
// attacks look like), cost (seconds and peak memory per stage) and provenance (config,
// seeds, version). Every chart is <svg class="chart" data-chart="KIND">.
#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "antidote/report/results.hpp"

namespace antidote {

using nlohmann::json;

namespace {

// ---------------------------------------------------------------- text helpers

// HTML-escapes `s`. "://" is written as "&#58;//" so that no URL in user text (a config
// path, a news sentence) reads as a reference in the page source; it renders the same.
std::string esc(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    switch (c) {
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      case ':':
        if (s.compare(i + 1, 2, "//") == 0) o += "&#58;";
        else o += c;
        break;
      default: o += c;
    }
  }
  return o;
}

// A field as text: strings as they are, numbers dumped, anything else `def`.
std::string text(const json& obj, const char* key, const std::string& def = "") {
  if (!obj.is_object() || !obj.contains(key)) return def;
  const auto& v = obj[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return def;
  return v.dump();
}

bool has_num(const json& obj, const char* key) {
  return obj.is_object() && obj.contains(key) && obj[key].is_number();
}

double num(const json& obj, const char* key, double def = 0.0) {
  return has_num(obj, key) ? obj[key].get<double>() : def;
}

std::string pct(const json& obj, const char* key) {
  return obj.is_object() && obj.contains(key) ? percent(obj[key]) : "–";
}

// ---------------------------------------------------------------- PNG data URIs

std::string base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string o;
  o.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    o += t[v >> 18];
    o += t[(v >> 12) & 63];
    o += t[(v >> 6) & 63];
    o += t[v & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    o += t[v >> 18];
    o += t[(v >> 12) & 63];
    o += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    o += t[v >> 18];
    o += t[(v >> 12) & 63];
    o += t[(v >> 6) & 63];
    o += '=';
  }
  return o;
}

void put_u32(std::string& s, uint32_t v) {
  s += char(v >> 24);
  s += char((v >> 16) & 255);
  s += char((v >> 8) & 255);
  s += char(v & 255);
}

void png_chunk(std::string& png, const char* type, const std::string& data) {
  put_u32(png, static_cast<uint32_t>(data.size()));
  std::string body = std::string(type, 4) + data;
  png += body;
  put_u32(png, static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(body.data()), body.size())));
}

// An 8-bit grey (channels 1) or RGB (channels 3) PNG from interleaved rows; "" on failure.
std::string encode_png(int width, int height, int channels, const std::vector<uint8_t>& hwc) {
  std::string raw;
  raw.reserve(static_cast<size_t>(height) * (1 + width * channels));
  for (int y = 0; y < height; ++y) {
    raw += '\0';  // filter: none
    raw.append(reinterpret_cast<const char*>(hwc.data()) + static_cast<size_t>(y) * width * channels,
               static_cast<size_t>(width) * channels);
  }
  uLongf zlen = compressBound(raw.size());
  std::string z(zlen, '\0');
  if (compress2(reinterpret_cast<Bytef*>(&z[0]), &zlen, reinterpret_cast<const Bytef*>(raw.data()), raw.size(), 9) !=
      Z_OK)
    return "";
  z.resize(zlen);
  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  put_u32(ihdr, static_cast<uint32_t>(width));
  put_u32(ihdr, static_cast<uint32_t>(height));
  ihdr += char(8);                       // bit depth
  ihdr += char(channels == 3 ? 2 : 0);   // colour type: RGB or grey
  ihdr += std::string(3, '\0');          // compression, filter, interlace
  png_chunk(png, "IHDR", ihdr);
  png_chunk(png, "IDAT", z);
  png_chunk(png, "IEND", "");
  return png;
}

// {shape: [C,H,W] or [H,W], pixels: [uint8...]} -> "data:image/png;base64,..."; "" if malformed.
std::string image_data_uri(const json& img, int* w_out, int* h_out) {
  if (!img.is_object() || !img.contains("shape") || !img.contains("pixels")) return "";
  const auto& shape = img["shape"];
  const auto& px = img["pixels"];
  if (!shape.is_array() || !px.is_array()) return "";
  int64_t c = 1, h = 0, w = 0;
  try {
    if (shape.size() == 3) {
      c = shape[0].get<int64_t>(), h = shape[1].get<int64_t>(), w = shape[2].get<int64_t>();
    } else if (shape.size() == 2) {
      h = shape[0].get<int64_t>(), w = shape[1].get<int64_t>();
    } else {
      return "";
    }
  } catch (const json::exception&) {
    return "";
  }
  if (c < 1 || h < 1 || w < 1 || h > 4096 || w > 4096 || static_cast<int64_t>(px.size()) != c * h * w) return "";
  const int out_c = c >= 3 ? 3 : 1;  // RGB from the first three planes, else the first plane
  std::vector<uint8_t> hwc(static_cast<size_t>(h * w * out_c));
  for (int64_t k = 0; k < out_c; ++k)
    for (int64_t i = 0; i < h * w; ++i) {
      const auto& v = px[static_cast<size_t>(k * h * w + i)];
      double d = v.is_number() ? v.get<double>() : 0.0;
      hwc[static_cast<size_t>(i * out_c + k)] = static_cast<uint8_t>(std::clamp(d, 0.0, 255.0));
    }
  auto png = encode_png(static_cast<int>(w), static_cast<int>(h), out_c, hwc);
  if (png.empty()) return "";
  if (w_out) *w_out = static_cast<int>(w);
  if (h_out) *h_out = static_cast<int>(h);
  return "data:image/png;base64," + base64(png);
}

// ---------------------------------------------------------------- verdicts

// Rows of one experiment cell (same data, model, attack and seed), the `none` row first if any.
struct Cell {
  std::string dataset, model, attack, rate, target, seed;
  std::vector<const json*> rows;
  const json* none = nullptr;
  std::string title() const {
    return fmt::format("{} × {} ({}, {}% poisoned, target {}, seed {})", dataset, attack, model, rate, target, seed);
  }
  std::string slug() const { return dataset + "-" + attack + "-" + seed; }
};

std::vector<Cell> group_cells(const json& runs) {
  std::vector<Cell> cells;
  std::map<std::string, size_t> index;
  if (!runs.is_array()) return cells;
  for (const auto& r : runs) {
    if (!r.is_object()) continue;
    Cell c{text(r, "dataset"), text(r, "model"), text(r, "attack"), percent(field(r, "poison_rate")),
           text(r, "target"), text(r, "seed"), {}, nullptr};
    std::string key = c.dataset + '\x1f' + c.model + '\x1f' + c.attack + '\x1f' + c.rate + '\x1f' + c.target + '\x1f' + c.seed;
    auto it = index.find(key);
    if (it == index.end()) {
      index[key] = cells.size();
      cells.push_back(c);
      it = index.find(key);
    }
    Cell& cell = cells[it->second];
    cell.rows.push_back(&r);
    if (text(r, "defense") == "none" && !cell.none) cell.none = &r;
  }
  return cells;
}

constexpr double kEps = 1e-9;

// Issue 6's bar: ASR <= max(5 %, floor + 3 points) and CACC drop <= 2 points vs the suspect.
double asr_bar(const json& row) { return std::max(0.05, num(row, "asr_floor", 0.0) + 0.03); }

struct Judgement {
  std::string verdict;  // reference, success, fail, unknown
  std::string asr_class, cacc_class;  // ok, bad or ""
  std::string why;
};

Judgement judge(const json& row, const json* none) {
  Judgement j;
  if (text(row, "defense") == "none") {
    j.verdict = "reference";
    j.why = "the suspect model itself";
    return j;
  }
  if (!has_num(row, "asr") || !has_num(row, "cacc")) {
    j.verdict = "unknown";
    j.why = "no metrics";
    return j;
  }
  const double bar = asr_bar(row);
  const bool asr_ok = num(row, "asr") <= bar + kEps;
  j.asr_class = asr_ok ? "ok" : "bad";
  std::string asr_why = fmt::format("ASR {}% {} {:.1f}%", percent(row["asr"]), asr_ok ? "≤" : ">", 100 * bar);
  if (!none || !has_num(*none, "cacc")) {
    j.verdict = asr_ok ? "unknown" : "fail";
    j.why = asr_why + "; no suspect row to compare CACC with";
    return j;
  }
  const double drop = num(*none, "cacc") - num(row, "cacc");
  const bool cacc_ok = drop <= 0.02 + kEps;
  j.cacc_class = cacc_ok ? "ok" : "bad";
  j.verdict = asr_ok && cacc_ok ? "success" : "fail";
  j.why = fmt::format("{}; CACC drop {:.1f} points {} 2", asr_why, 100 * drop, cacc_ok ? "≤" : ">");
  return j;
}

const char* verdict_label(const std::string& v) {
  if (v == "success") return "removed";
  if (v == "fail") return "failed";
  if (v == "reference") return "suspect";
  return "unclear";
}

// ---------------------------------------------------------------- SVG charts

const char* kPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                          "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};


struct Bar {
  std::string label;
  double value;  // fraction, 0..1
  std::string cls;  // success, fail, reference, unknown
};

// Vertical bars of a fraction (0..100 %) with optional dashed reference lines.
std::string bar_chart(const std::string& kind, const std::string& title, const std::vector<Bar>& bars,
                      const std::vector<std::pair<double, std::string>>& lines, const std::string& cell_slug) {
  const double W = 460, H = 260, L = 44, R = 10, T = 38, B = 46;
  const double pw = W - L - R, ph = H - T - B;
  std::string s = fmt::format(
      "<svg class=\"chart\" data-chart=\"{}\" data-cell=\"{}\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" "
      "role=\"img\" aria-label=\"{}\">",
      kind, esc(cell_slug), W, H, W, H, esc(title));
  s += fmt::format("<text class=\"title\" x=\"{}\" y=\"16\">{}</text>", L, esc(title));
  for (int t = 0; t <= 4; ++t) {
    double y = T + ph - ph * t / 4.0;
    s += fmt::format("<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/>", L, L + pw, y, y);
    s += fmt::format("<text class=\"tick\" x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}%</text>", L - 4, y + 4, 25 * t);
  }
  const size_t n = std::max<size_t>(1, bars.size());
  const double slot = pw / n, bw = std::min(56.0, slot * 0.7);
  for (size_t i = 0; i < bars.size(); ++i) {
    const auto& b = bars[i];
    double v = std::clamp(b.value, 0.0, 1.0);
    double x = L + slot * i + (slot - bw) / 2, h = ph * v, y = T + ph - h;
    s += fmt::format(
        "<rect class=\"bar {}\" data-label=\"{}\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\"><title>{}: "
        "{:.1f}%</title></rect>",
        b.cls, esc(b.label), x, y, bw, std::max(h, 0.5), esc(b.label), 100 * b.value);
    s += fmt::format("<text class=\"value\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{:.1f}</text>", x + bw / 2,
                     y - 3, 100 * b.value);
    s += fmt::format("<text class=\"label\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>", x + bw / 2,
                     T + ph + 16, esc(b.label));
  }
  int nline = 0;
  for (const auto& [v, label] : lines) {
    if (!(v >= 0 && v <= 1)) continue;
    double y = T + ph - ph * v;
    s += fmt::format("<line class=\"ref\" x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/>", L, L + pw, y, y);
    s += fmt::format("<text class=\"reflabel\" x=\"{}\" y=\"{}\" text-anchor=\"end\">- - - {}</text>", W - R,
                     16 + 13 * nline++, esc(label));
  }
  s += fmt::format("<line class=\"axis\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>", L, L + pw, T + ph, T + ph);
  s += fmt::format("<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">defense</text>", L + pw / 2, H - 8);
  s += "</svg>";
  return s;
}

struct Series {
  std::string name, color;
  std::vector<std::pair<double, double>> points;  // (x, fraction)
};

// Lines over epochs (y: 0..100 %).
std::string line_chart(const std::string& kind, const std::string& title, const std::vector<Series>& series,
                       const std::string& xlabel, const std::string& cell_slug) {
  const double W = 540, H = 270, L = 44, R = 116, T = 28, B = 40;
  const double pw = W - L - R, ph = H - T - B;
  double xmin = 1e300, xmax = -1e300;
  for (const auto& se : series)
    for (const auto& p : se.points) xmin = std::min(xmin, p.first), xmax = std::max(xmax, p.first);
  if (xmin > xmax) xmin = 0, xmax = 1;
  if (xmax - xmin < 1e-9) xmax = xmin + 1;
  auto X = [&](double x) { return L + pw * (x - xmin) / (xmax - xmin); };
  auto Y = [&](double v) { return T + ph - ph * std::clamp(v, 0.0, 1.0); };
  std::string s = fmt::format(
      "<svg class=\"chart\" data-chart=\"{}\" data-cell=\"{}\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" "
      "role=\"img\" aria-label=\"{}\">",
      kind, esc(cell_slug), W, H, W, H, esc(title));
  s += fmt::format("<text class=\"title\" x=\"{}\" y=\"16\">{}</text>", L, esc(title));
  for (int t = 0; t <= 4; ++t) {
    double y = T + ph - ph * t / 4.0;
    s += fmt::format("<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/>", L, L + pw, y, y);
    s += fmt::format("<text class=\"tick\" x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}%</text>", L - 4, y + 4, 25 * t);
  }
  // x ticks: every integer when few, else about eight.
  const double span = xmax - xmin;
  const double step = span <= 10 ? 1 : std::ceil(span / 8);
  for (double x = std::ceil(xmin); x <= xmax + 1e-9; x += step) {
    s += fmt::format("<line class=\"grid\" x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{}\" y2=\"{}\"/>", X(x), X(x), T + ph,
                     T + ph + 4);
    s += fmt::format("<text class=\"tick\" x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>", X(x), T + ph + 16,
                     static_cast<long long>(std::llround(x)));
  }
  s += fmt::format("<line class=\"axis\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>", L, L + pw, T + ph, T + ph);
  s += fmt::format("<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>", L + pw / 2, H - 6,
                   esc(xlabel));
  int li = 0;
  for (const auto& se : series) {
    if (se.points.empty()) continue;
    std::string pts;
    for (const auto& p : se.points) pts += fmt::format("{:.1f},{:.1f} ", X(p.first), Y(p.second));
    s += fmt::format("<polyline class=\"series\" data-series=\"{}\" fill=\"none\" stroke=\"{}\" points=\"{}\"/>",
                     esc(se.name), se.color, pts);
    for (const auto& p : se.points)
      s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"><title>{} at {}: {:.1f}%</title></circle>",
                       X(p.first), Y(p.second), se.color, esc(se.name), p.first, 100 * p.second);
    double ly = T + 10 + 18 * li++;
    s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"3\"/>", L + pw + 10,
                     L + pw + 28, ly, ly, se.color);
    s += fmt::format("<text class=\"legend\" x=\"{}\" y=\"{}\">{} {:.1f}%</text>", L + pw + 32, ly + 4, esc(se.name),
                     100 * se.points.back().second);
  }
  s += "</svg>";
  return s;
}

// Identification scores: share of each group per bin, poisoned vs clean side by side.
std::string histogram_chart(const json& id, const std::string& title, const std::string& cell_slug) {
  std::vector<double> hp, hc;
  if (id.contains("poisoned_hist") && id["poisoned_hist"].is_array())
    for (const auto& v : id["poisoned_hist"]) hp.push_back(v.is_number() ? v.get<double>() : 0.0);
  if (id.contains("clean_hist") && id["clean_hist"].is_array())
    for (const auto& v : id["clean_hist"]) hc.push_back(v.is_number() ? v.get<double>() : 0.0);
  const size_t bins = std::max<size_t>(1, std::max(hp.size(), hc.size()));
  hp.resize(bins, 0.0);
  hc.resize(bins, 0.0);
  double np = 0, nc = 0;
  for (size_t i = 0; i < bins; ++i) np += hp[i], nc += hc[i];
  double ymax = 1e-9;
  for (size_t i = 0; i < bins; ++i)
    ymax = std::max({ymax, np > 0 ? hp[i] / np : 0.0, nc > 0 ? hc[i] / nc : 0.0});
  ymax = std::min(1.0, std::ceil(ymax * 10) / 10);
  const double bin_min = num(id, "bin_min", 0.0), bin_max = num(id, "bin_max", 1.0);
  const double W = 520, H = 270, L = 44, R = 150, T = 28, B = 40;
  const double pw = W - L - R, ph = H - T - B;
  std::string s = fmt::format(
      "<svg class=\"chart\" data-chart=\"identification\" data-cell=\"{}\" viewBox=\"0 0 {} {}\" width=\"{}\" "
      "height=\"{}\" role=\"img\" aria-label=\"{}\">",
      esc(cell_slug), W, H, W, H, esc(title));
  s += fmt::format("<text class=\"title\" x=\"{}\" y=\"16\">{}</text>", L, esc(title));
  for (int t = 0; t <= 4; ++t) {
    double y = T + ph - ph * t / 4.0;
    s += fmt::format("<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/>", L, L + pw, y, y);
    s += fmt::format("<text class=\"tick\" x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.3g}%</text>", L - 4, y + 4,
                     100 * ymax * t / 4.0);
  }
  const double slot = pw / bins, bw = slot * 0.42;
  for (size_t i = 0; i < bins; ++i) {
    double fp = np > 0 ? hp[i] / np : 0.0, fc = nc > 0 ? hc[i] / nc : 0.0;
    double x = L + slot * i + slot * 0.08;
    double lo = bin_min + (bin_max - bin_min) * i / bins, hi = bin_min + (bin_max - bin_min) * (i + 1) / bins;
    s += fmt::format(
        "<rect class=\"hist poisoned\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\"><title>poisoned, "
        "score {:.3g}–{:.3g}: {:.0f} rows</title></rect>",
        x, T + ph - ph * fp / ymax, bw, ph * fp / ymax, lo, hi, hp[i]);
    s += fmt::format(
        "<rect class=\"hist clean\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\"><title>clean, score "
        "{:.3g}–{:.3g}: {:.0f} rows</title></rect>",
        x + bw, T + ph - ph * fc / ymax, bw, ph * fc / ymax, lo, hi, hc[i]);
  }
  s += fmt::format("<line class=\"axis\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>", L, L + pw, T + ph, T + ph);
  for (int t = 0; t <= 4; ++t)
    s += fmt::format("<text class=\"tick\" x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.3g}</text>", L + pw * t / 4.0,
                     T + ph + 16, bin_min + (bin_max - bin_min) * t / 4.0);
  s += fmt::format("<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">score (lower = more suspect)</text>",
                   L + pw / 2, H - 6);
  s += fmt::format("<rect class=\"hist poisoned\" x=\"{}\" y=\"{}\" width=\"14\" height=\"10\"/>", L + pw + 10, T + 4);
  s += fmt::format("<text class=\"legend\" x=\"{}\" y=\"{}\">poisoned ({:.0f})</text>", L + pw + 28, T + 13, np);
  s += fmt::format("<rect class=\"hist clean\" x=\"{}\" y=\"{}\" width=\"14\" height=\"10\"/>", L + pw + 10, T + 22);
  s += fmt::format("<text class=\"legend\" x=\"{}\" y=\"{}\">clean ({:.0f})</text>", L + pw + 28, T + 31, nc);
  if (has_num(id, "auroc"))
    s += fmt::format("<text class=\"legend\" x=\"{}\" y=\"{}\">AUROC {:.3f}</text>", L + pw + 10, T + 54,
                     num(id, "auroc"));
  s += fmt::format("<text class=\"legend\" x=\"{}\" y=\"{}\">share of each group</text>", L + pw + 10, T + 72);
  s += "</svg>";
  return s;
}

// Seconds per defense, stacked by stage.
std::string cost_chart(const Cell& cell, const std::vector<std::string>& stage_names) {
  double tmax = 1e-9;
  for (const json* r : cell.rows) tmax = std::max(tmax, num(*r, "seconds", 0.0));
  for (const json* r : cell.rows) {
    double sum = 0;
    if (r->contains("stages") && (*r)["stages"].is_array())
      for (const auto& st : (*r)["stages"]) sum += num(st, "seconds");
    tmax = std::max(tmax, sum);
  }
  const double W = 560, L = 70, R = 60, T = 28, rowh = 22;
  const double H = T + rowh * cell.rows.size() + 40, pw = W - L - R;
  std::string s = fmt::format(
      "<svg class=\"chart\" data-chart=\"cost\" data-cell=\"{}\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" "
      "role=\"img\" aria-label=\"seconds per defense\">",
      esc(cell.slug()), W, H, W, H);
  s += fmt::format("<text class=\"title\" x=\"{}\" y=\"16\">Seconds per defense, by stage: {}</text>", L,
                   esc(cell.dataset + " × " + cell.attack));
  for (size_t i = 0; i < cell.rows.size(); ++i) {
    const json& r = *cell.rows[i];
    double y = T + rowh * i;
    s += fmt::format("<text class=\"label\" x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>", L - 6, y + 14,
                     esc(text(r, "defense")));
    double x = L, sum = 0;
    if (r.contains("stages") && r["stages"].is_array())
      for (const auto& st : r["stages"]) {
        double sec = num(st, "seconds");
        auto name = text(st, "name", "?");
        size_t k = std::find(stage_names.begin(), stage_names.end(), name) - stage_names.begin();
        double w = pw * sec / tmax;
        s += fmt::format(
            "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{}\" fill=\"{}\"><title>{}: {:.1f} s, peak {:.0f} "
            "MB</title></rect>",
            x, y + 3, std::max(w, 0.5), rowh - 6, kPalette[k % 10], esc(name), sec, num(st, "peak_rss_mb"));
        x += w;
        sum += sec;
      }
    s += fmt::format("<text class=\"value\" x=\"{:.1f}\" y=\"{:.1f}\">{:.1f} s</text>", x + 4, y + 14,
                     std::max(sum, num(r, "seconds")));
  }
  double ly = T + rowh * cell.rows.size() + 18, lx = L;
  std::set<std::string> present;
  for (const json* r : cell.rows)
    if (r->contains("stages") && (*r)["stages"].is_array())
      for (const auto& st : (*r)["stages"]) present.insert(text(st, "name", "?"));
  for (size_t k = 0; k < stage_names.size(); ++k) {
    if (!present.count(stage_names[k])) continue;
    s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"12\" height=\"10\" fill=\"{}\"/>", lx, ly - 9,
                     kPalette[k % 10]);
    s += fmt::format("<text class=\"legend\" x=\"{:.1f}\" y=\"{:.1f}\">{}</text>", lx + 15, ly, esc(stage_names[k]));
    lx += 24 + 7.0 * stage_names[k].size();
    if (lx > W - 80) lx = L, ly += 14;
  }
  s += "</svg>";
  return s;
}

// ---------------------------------------------------------------- text examples

std::vector<std::string> split_ws(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (!cur.empty()) out.push_back(cur), cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// The triggered sentence with every token that the clean one lacks (counted as a multiset) in <mark>.
std::string mark_trigger(const std::string& clean, const std::string& triggered) {
  auto toks = split_ws(triggered);
  if (clean.empty()) {
    std::string o;
    for (size_t i = 0; i < toks.size(); ++i) o += (i ? " " : "") + esc(toks[i]);
    return o;
  }
  std::map<std::string, int> have;
  for (const auto& t : split_ws(clean)) have[t]++;
  std::string o;
  for (size_t i = 0; i < toks.size(); ++i) {
    if (i) o += ' ';
    auto it = have.find(toks[i]);
    if (it != have.end() && it->second > 0) {
      it->second--;
      o += esc(toks[i]);
    } else {
      o += "<mark>" + esc(toks[i]) + "</mark>";
    }
  }
  return o;
}

// ---------------------------------------------------------------- page

const char* kStyle = R"css(
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#222;background:#fff;line-height:1.4}
header{background:#1f3b57;color:#fff;padding:1em 2em}
header h1{margin:0 0 .2em 0;font-size:1.6em}
header p{margin:0;opacity:.9}
nav{background:#eef2f6;padding:.5em 2em;border-bottom:1px solid #d5dde6}
nav a{margin-right:1.2em;color:#1f3b57;text-decoration:none}
main{padding:0 2em 2em 2em;max-width:1400px}
section{margin-top:1.6em}
h2{border-bottom:2px solid #1f3b57;padding-bottom:.15em;font-size:1.3em}
h3{font-size:1.05em;margin:1.1em 0 .4em 0}
table{border-collapse:collapse;margin:.4em 0;font-size:.9em}
.scroll{overflow-x:auto;max-width:100%}
td,th{border:1px solid #cfd6dd;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#eef2f6;white-space:normal;vertical-align:bottom}
td.l,th.l{text-align:left}
tr.success td{background:#e3f4e6}
tr.fail td{background:#fbe4e4}
tr.reference td{background:#f2f2f2;font-style:italic}
tr.unknown td{background:#fff8e1}
td.ok{color:#17692b;font-weight:600}
td.bad{color:#a4161a;font-weight:600}
span.badge{display:inline-block;padding:0 .5em;border-radius:.6em;font-size:.85em;font-style:normal}
span.badge.success{background:#2e7d32;color:#fff}
span.badge.fail{background:#c62828;color:#fff}
span.badge.reference{background:#757575;color:#fff}
span.badge.unknown{background:#f9a825;color:#222}
.legendline{font-size:.88em;color:#555}
.charts{display:flex;flex-wrap:wrap;gap:1em}
svg.chart{background:#fcfcfd;border:1px solid #e1e5ea;font-size:11px}
svg.chart .title{font-size:12px;font-weight:600;fill:#222}
svg.chart .tick,svg.chart .label,svg.chart .legend,svg.chart .reflabel{fill:#444}
svg.chart .value{fill:#222;font-size:10px}
svg.chart .grid{stroke:#e4e7eb;stroke-width:1}
svg.chart .axis{stroke:#555;stroke-width:1}
svg.chart .ref{stroke:#333;stroke-dasharray:5 3;stroke-width:1}
svg.chart .reflabel{font-size:10px}
svg.chart .bar.success{fill:#43a047}
svg.chart .bar.fail{fill:#e53935}
svg.chart .bar.reference{fill:#9e9e9e}
svg.chart .bar.unknown{fill:#fbc02d}
svg.chart .series{stroke-width:2}
svg.chart .hist.poisoned{fill:#e53935}
svg.chart .hist.clean{fill:#1e88e5}
.verdict{border-left:4px solid #1f3b57;background:#eef2f6;padding:.5em 1em;margin:.5em 0}
.examples{display:flex;flex-wrap:wrap;gap:1em}
figure.pair{margin:0;border:1px solid #e1e5ea;padding:.4em;background:#fcfcfd;display:flex;gap:.4em}
figure.pair div{text-align:center;font-size:.8em;color:#555}
img.thumb{image-rendering:pixelated;image-rendering:crisp-edges;display:block;border:1px solid #ccc;background:#000}
ol.sentences li{margin-bottom:.5em}
.clean{color:#555}
mark{background:#ffd54f;padding:0 .15em;border-radius:2px}
pre{background:#f6f8fa;border:1px solid #e1e5ea;padding:.8em;overflow:auto;font-size:.85em}
footer{color:#777;font-size:.85em;padding:1em 2em;border-top:1px solid #e1e5ea}
)css";

std::string results_section(const std::vector<Cell>& cells) {
  std::string h = "<section id=\"results\"><h2>Results</h2>";
  h += "<p class=\"legendline\">A defense <span class=\"badge success\">removed</span> the backdoor when its ASR ≤ "
       "max(5%, ASR floor + 3 points) and its CACC is at most 2 points below the suspect's (the <code>none</code> row); "
       "otherwise it <span class=\"badge fail\">failed</span>. The ASR floor is the clean reference model's ASR on the "
       "same triggered inputs. RA: robust accuracy (true labels on triggered inputs). DER: defense effectiveness "
       "rating.</p>";
  if (cells.empty()) return h + "<p>No finished runs yet.</p></section>";
  h += "<div class=\"scroll\"><table class=\"results\"><thead><tr><th class=\"l\">dataset</th><th "
       "class=\"l\">attack</th><th>rate %</th><th>seed</th><th class=\"l\">defense</th><th>clean<br>samples</th><th>CACC %</th><th>ΔCACC</th><th>ASR %</th><th>ASR floor %</th><th>RA %</th><th>PCC %</th>"
       "<th>DER</th><th>detection<br>P/R/F1 % (flagged)</th><th>seconds</th><th class=\"l\">verdict</th></tr></thead><tbody>";
  for (const auto& c : cells) {
    for (const json* rp : c.rows) {
      const json& r = *rp;
      auto j = judge(r, c.none);
      std::string dcacc = "–";
      if (c.none && has_num(*c.none, "cacc") && has_num(r, "cacc") && rp != c.none)
        dcacc = fmt::format("{:+.1f}", 100 * (num(r, "cacc") - num(*c.none, "cacc")));
      std::string det = "–";
      if (r.contains("detection") && r["detection"].is_object()) {
        const auto& d = r["detection"];
        det = fmt::format("{}/{}/{} ({})", pct(d, "precision"), pct(d, "recall"), pct(d, "f1"), text(d, "flagged", "?"));
      }
      h += fmt::format(
          "<tr class=\"run {v}\" data-defense=\"{def}\" data-cell=\"{cell}\" data-verdict=\"{v}\" title=\"{why}\">"
          "<td class=\"l\">{ds}</td><td class=\"l\">{atk}</td><td>{rate}</td><td>{seed}</td><td class=\"l\">{def}</td><td>{cs}</td><td class=\"{cc}\">{cacc}</td><td class=\"{cc}\">{dc}</td>"
          "<td class=\"{ac}\">{asr}</td><td>{floor}</td><td>{ra}</td><td>{pcc}</td><td>{der}</td><td>{det}</td>"
          "<td>{sec}</td><td class=\"l\"><span class=\"badge {v}\">{vl}</span></td></tr>",
          fmt::arg("v", j.verdict), fmt::arg("def", esc(text(r, "defense"))), fmt::arg("cell", esc(c.slug())),
          fmt::arg("why", esc(j.why)), fmt::arg("ds", esc(c.dataset)), fmt::arg("atk", esc(c.attack)),
          fmt::arg("rate", esc(c.rate)), fmt::arg("seed", esc(c.seed)), fmt::arg("cs", esc(text(r, "clean_samples", "–"))),
          fmt::arg("cc", j.cacc_class), fmt::arg("cacc", pct(r, "cacc")), fmt::arg("dc", dcacc),
          fmt::arg("ac", j.asr_class), fmt::arg("asr", pct(r, "asr")), fmt::arg("floor", pct(r, "asr_floor")),
          fmt::arg("ra", pct(r, "ra")), fmt::arg("pcc", pct(r, "pcc")),
          fmt::arg("der", has_num(r, "der") ? fmt::format("{:.3f}", num(r, "der")) : "–"), fmt::arg("det", esc(det)),
          fmt::arg("sec", has_num(r, "seconds") ? fmt::format("{:.1f}", num(r, "seconds")) : "–"),
          fmt::arg("vl", verdict_label(j.verdict)));
    }
  }
  h += "</tbody></table></div><p class=\"legendline\">Model and trigger target of each cell: see <a "
       "href=\"#summary\">in brief</a>. Hover a row for the reason of its verdict.</p></section>";
  return h;
}

// With several seeds: each defense's mean ± sd over the seeds of a cell, and on how many
// seeds it removed the backdoor (the verdict of the results table).
std::string seeds_section(const std::vector<Cell>& cells) {
  struct Line {
    std::string defense;
    std::vector<double> cacc, asr;
    int removed = 0, judged = 0, seeds = 0;
  };
  struct Group {
    const Cell* first;
    int seeds = 0;
    std::vector<Line> lines;
  };
  std::vector<std::pair<std::string, Group>> groups;
  for (const auto& c : cells) {
    std::string key = c.dataset + '\x1f' + c.model + '\x1f' + c.attack + '\x1f' + c.rate + '\x1f' + c.target;
    auto g = std::find_if(groups.begin(), groups.end(), [&](const auto& kv) { return kv.first == key; });
    if (g == groups.end()) g = groups.insert(groups.end(), {key, Group{&c, 0, {}}});
    ++g->second.seeds;
    for (const json* r : c.rows) {
      auto def = text(*r, "defense");
      auto& lines = g->second.lines;
      auto l = std::find_if(lines.begin(), lines.end(), [&](const Line& x) { return x.defense == def; });
      if (l == lines.end()) l = lines.insert(lines.end(), Line{def, {}, {}, 0, 0, 0});
      ++l->seeds;
      if (has_num(*r, "cacc")) l->cacc.push_back(num(*r, "cacc"));
      if (has_num(*r, "asr")) l->asr.push_back(num(*r, "asr"));
      auto v = judge(*r, c.none).verdict;
      if (v == "success" || v == "fail") ++l->judged;
      if (v == "success") ++l->removed;
    }
  }
  if (std::none_of(groups.begin(), groups.end(), [](const auto& kv) { return kv.second.seeds > 1; })) return "";
  std::string h =
      "<section id=\"seeds\"><h2>Over seeds</h2><p class=\"legendline\">Mean ± sample standard deviation over the "
      "seeds of each cell, and on how many of them the defense removed the backdoor (the verdict of the results "
      "table).</p><div class=\"scroll\"><table class=\"results\"><thead><tr><th class=\"l\">dataset</th><th "
      "class=\"l\">attack</th><th class=\"l\">defense</th><th>seeds</th><th>CACC %</th><th>ASR %</th><th>removed "
      "the backdoor</th></tr></thead><tbody>";
  for (const auto& [key, g] : groups)
    for (const auto& l : g.lines)
      h += fmt::format(
          "<tr data-defense=\"{def}\"><td class=\"l\">{ds}</td><td class=\"l\">{atk}</td><td class=\"l\">{def}</td>"
          "<td>{n}</td><td>{cacc}</td><td>{asr}</td><td>{removed}</td></tr>",
          fmt::arg("def", esc(l.defense)), fmt::arg("ds", esc(g.first->dataset)), fmt::arg("atk", esc(g.first->attack)),
          fmt::arg("n", l.seeds), fmt::arg("cacc", mean_sd_percent(l.cacc)), fmt::arg("asr", mean_sd_percent(l.asr)),
          fmt::arg("removed", l.judged ? fmt::format("{} of {}", l.removed, l.judged) : std::string("–")));
  return h + "</tbody></table></div></section>";
}

std::string summary_section(const std::vector<Cell>& cells) {
  std::string h = "<section id=\"summary\"><h2>In brief</h2><ul>";
  if (cells.empty()) h += "<li>No finished runs yet.</li>";
  for (const auto& c : cells) {
    std::vector<std::string> ok, bad, unclear;
    for (const json* r : c.rows) {
      auto j = judge(*r, c.none);
      auto d = esc(text(*r, "defense"));
      if (j.verdict == "success") ok.push_back(d);
      else if (j.verdict == "fail") bad.push_back(d);
      else if (j.verdict == "unknown") unclear.push_back(d);
    }
    auto join = [](const std::vector<std::string>& v) {
      std::string s;
      for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
      return s.empty() ? std::string("—") : s;
    };
    h += "<li><b>" + esc(c.title()) + "</b>: ";
    if (c.none)
      h += fmt::format("the suspect model has CACC {}% and ASR {}% (floor {}%). ", pct(*c.none, "cacc"),
                       pct(*c.none, "asr"), pct(*c.none, "asr_floor"));
    h += "Removed the backdoor: <b>" + join(ok) + "</b>. Failed: " + join(bad) + ".";
    if (!unclear.empty()) h += " Unclear: " + join(unclear) + ".";
    h += "</li>";
  }
  return h + "</ul></section>";
}

std::string charts_section(const std::vector<Cell>& cells) {
  std::string h = "<section id=\"charts\"><h2>ASR and CACC per defense</h2>";
  h += "<p class=\"legendline\">Green: removed the backdoor; red: failed; grey: the suspect model (no defense). Dashed "
       "lines: the bars a defense must pass.</p>";
  if (cells.empty()) h += "<p>No finished runs yet.</p>";
  for (const auto& c : cells) {
    std::vector<Bar> asr, cacc;
    for (const json* r : c.rows) {
      auto j = judge(*r, c.none);
      asr.push_back({text(*r, "defense"), num(*r, "asr"), j.verdict});
      cacc.push_back({text(*r, "defense"), num(*r, "cacc"), j.verdict});
    }
    const json& first = c.none ? *c.none : *c.rows.front();
    std::vector<std::pair<double, std::string>> asr_lines{{asr_bar(first), fmt::format("success ≤ {:.1f}%", 100 * asr_bar(first))}};
    std::vector<std::pair<double, std::string>> cacc_lines;
    if (c.none && has_num(*c.none, "cacc"))
      cacc_lines.push_back({num(*c.none, "cacc") - 0.02, fmt::format("suspect − 2 = {:.1f}%", 100 * (num(*c.none, "cacc") - 0.02))});
    h += "<h3>" + esc(c.title()) + "</h3><div class=\"charts\">";
    h += bar_chart("asr", "ASR % (lower is better)", asr, asr_lines, c.slug());
    h += bar_chart("cacc", "CACC % (higher is better)", cacc, cacc_lines, c.slug());
    h += "</div>";
  }
  return h + "</section>";
}

std::vector<Series> trajectory_series(const json& traj, const json* none) {
  std::vector<Series> series{{"CACC", "#1e88e5", {}}, {"ASR", "#e53935", {}}, {"RA", "#43a047", {}}};
  const char* keys[] = {"cacc", "asr", "ra"};
  if (none)  // epoch 0: the suspect model
    for (int k = 0; k < 3; ++k)
      if (has_num(*none, keys[k])) series[k].points.push_back({0.0, num(*none, keys[k])});
  double e = 0;
  for (const auto& row : traj) {
    e = has_num(row, "epoch") ? num(row, "epoch") : e + 1;
    for (int k = 0; k < 3; ++k)
      if (has_num(row, keys[k])) series[k].points.push_back({e, num(row, keys[k])});
  }
  std::vector<Series> out;
  for (auto& s : series)
    if (s.points.size() > (none ? 1u : 0u)) out.push_back(std::move(s));
  return out;
}

std::string bedkd_section(const std::vector<Cell>& cells) {
  std::string h = "<section id=\"bedkd\"><h2>BeDKD</h2>";
  h += "<p class=\"legendline\">Left: CACC, ASR and RA of the student after each adversarial knowledge-distillation "
       "(AKD) epoch; epoch 0 is the suspect model. Right: the identification scores of the training rows, poisoned "
       "versus clean (BeDKD trusts the high scores and punishes the low ones).</p>";
  bool any = false;
  for (const auto& c : cells)
    for (const json* rp : c.rows) {
      const json& r = *rp;
      if (text(r, "defense") != "bedkd") continue;
      any = true;
      const json& d = r.contains("details") && r["details"].is_object() ? r["details"] : json::object();
      h += "<h3>" + esc(c.title()) + "</h3><div class=\"charts\">";
      std::vector<Series> series;
      if (d.contains("trajectory") && d["trajectory"].is_array()) series = trajectory_series(d["trajectory"], c.none);
      if (!series.empty())
        h += line_chart("trajectory", "BeDKD: student over AKD epochs", series, "AKD epoch", c.slug());
      else
        h += "<p>No per-epoch trajectory recorded (no monitor set).</p>";
      if (d.contains("identification") && d["identification"].is_object()) {
        const auto& id = d["identification"];
        h += histogram_chart(id, "BeDKD: identification scores", c.slug());
        h += "</div>";
        h += fmt::format("<p class=\"legendline\">AUROC {} (poisoned rows score lower); mean score poisoned {}, clean {}.",
                         has_num(id, "auroc") ? fmt::format("{:.3f}", num(id, "auroc")) : "–",
                         has_num(id, "poisoned_mean") ? fmt::format("{:.4g}", num(id, "poisoned_mean")) : "–",
                         has_num(id, "clean_mean") ? fmt::format("{:.4g}", num(id, "clean_mean")) : "–");
        if (r.contains("detection") && r["detection"].is_object())
          h += fmt::format(" Rows flagged: {} (precision {}%, recall {}%).", text(r["detection"], "flagged", "?"),
                           pct(r["detection"], "precision"), pct(r["detection"], "recall"));
        h += "</p>";
        if (d.contains("identify") && d["identify"].is_object()) {
          const auto& how = d["identify"];
          h += fmt::format("<p class=\"legendline\">Identification: {} (target label {}, confidence {}%).</p>",
                           esc(text(how, "method", "dmm")), text(how, "target", "?"), pct(how, "confidence"));
          if (how.contains("warning") && how["warning"].is_string())
            h += "<p class=\"legendline\"><strong>Identification is unsure:</strong> " +
                 esc(how["warning"].get<std::string>()) + ". Purification may have failed.</p>";
        }
      } else {
        h += "<p>No identification scores recorded.</p></div>";
      }
    }
  if (!any) h += "<p>No BeDKD run in this document.</p>";
  return h + "</section>";
}

std::string other_trajectories_section(const std::vector<Cell>& cells) {
  std::string body;
  for (const auto& c : cells)
    for (const json* rp : c.rows) {
      const json& r = *rp;
      auto def = text(r, "defense");
      if (def == "bedkd" || !r.contains("details") || !r["details"].is_object()) continue;
      const auto& d = r["details"];
      if (d.contains("trajectory") && d["trajectory"].is_array()) {
        auto series = trajectory_series(d["trajectory"], c.none);
        if (!series.empty())
          body += line_chart("trajectory", def + " over epochs: " + c.dataset + " × " + c.attack, series, "epoch",
                             c.slug());
      }
      if (d.contains("identification") && d["identification"].is_object())
        body += histogram_chart(d["identification"], def + ": identification scores", c.slug());
    }
  if (body.empty()) return "";
  return "<section id=\"trajectories\"><h2>Other defenses over epochs</h2><div class=\"charts\">" + body +
         "</div></section>";
}

std::string ntml_section(const std::vector<Cell>& cells) {
  std::string h = "<section id=\"ntml\"><h2>NT-ML</h2>";
  h += "<p class=\"legendline\">T: the teacher (the suspect model, trained on in ML); S: the student. After NT "
       "(non-target training on the poisoned set) S should be well below T on CACC and above it on PCC; after ML "
       "(mutual learning on the clean set) S should keep the CACC and lose the ASR. The control runs ML without "
       "NT.</p>";
  bool any = false;
  for (const auto& c : cells)
    for (const json* rp : c.rows) {
      const json& r = *rp;
      if (text(r, "defense") != "ntml") continue;
      any = true;
      const json& d = r.contains("details") && r["details"].is_object() ? r["details"] : json::object();
      h += "<h3>" + esc(c.title()) + "</h3>";
      if (d.contains("stages") && d["stages"].is_array() && !d["stages"].empty()) {
        h += "<table class=\"ntml-stages\"><thead><tr><th class=\"l\">stage</th><th class=\"l\">model</th><th>CACC "
             "%</th><th>ASR %</th><th>RA %</th><th>PCC %</th></tr></thead><tbody>";
        for (const auto& s : d["stages"])
          h += fmt::format(
              "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
              esc(text(s, "stage")), esc(text(s, "model")), pct(s, "cacc"), pct(s, "asr"), pct(s, "ra"), pct(s, "pcc"));
        h += "</tbody></table>";
      } else {
        h += "<p>No stage table recorded (no monitor set).</p>";
      }
      if (d.contains("checks") && d["checks"].is_array() && !d["checks"].empty()) {
        h += "<table class=\"ntml-checks\"><thead><tr><th class=\"l\">check</th><th class=\"l\">result</th></tr></thead><tbody>";
        for (const auto& ch : d["checks"]) {
          const bool passed = field(ch, "passed") == true;
          const bool info = field(ch, "informational") == true;
          h += fmt::format("<tr class=\"{}\"><td class=\"l\">{}{}</td><td class=\"l\">{}</td></tr>",
                           passed ? "success" : (info ? "unknown" : "fail"), esc(text(ch, "check")),
                           info ? " (informational)" : "", passed ? "holds" : "does not hold");
        }
        h += "</tbody></table>";
      }
      if (d.contains("verdict") && d["verdict"].is_string())
        h += "<p class=\"verdict\"><b>Verdict:</b> " + esc(d["verdict"].get<std::string>()) + "</p>";
      if (d.contains("reading") && d["reading"].is_string())
        h += "<p class=\"legendline\">" + esc(d["reading"].get<std::string>()) + "</p>";
    }
  if (!any) h += "<p>No NT-ML run in this document.</p>";
  return h + "</section>";
}

std::string examples_section(const json& doc) {
  std::string h = "<section id=\"examples\"><h2>What the attacks look like</h2>";
  const json& exs = doc.contains("examples") && doc["examples"].is_array() ? doc["examples"] : json::array();
  if (exs.empty()) h += "<p>No examples in this document.</p>";
  for (const auto& ex : exs) {
    if (!ex.is_object()) continue;
    h += "<h3>" + esc(text(ex, "dataset") + " × " + text(ex, "attack")) + "</h3>";
    const json& clean = ex.contains("clean") && ex["clean"].is_array() ? ex["clean"] : json::array();
    const json& trig = ex.contains("triggered") && ex["triggered"].is_array() ? ex["triggered"] : json::array();
    const size_t n = std::max(clean.size(), trig.size());
    if (text(ex, "modality") == "image") {
      h += "<div class=\"examples\">";
      for (size_t i = 0; i < n; ++i) {
        h += "<figure class=\"pair\">";
        for (int side = 0; side < 2; ++side) {
          const json& arr = side ? trig : clean;
          const char* label = side ? "triggered" : "clean";
          int w = 0, ht = 0;
          std::string uri = i < arr.size() ? image_data_uri(arr[i], &w, &ht) : "";
          if (uri.empty()) {
            h += fmt::format("<div>(no image)<br>{}</div>", label);
            continue;
          }
          int k = std::max(1, 96 / std::max(w, ht));
          h += fmt::format(
              "<div><img class=\"thumb {}\" alt=\"{} example {}\" width=\"{}\" height=\"{}\" src=\"{}\">{}</div>",
              label, label, i + 1, w * k, ht * k, uri, label);
        }
        h += "</figure>";
      }
      h += "</div>";
    } else {
      h += "<p class=\"legendline\">Each pair: the clean sentence, then the triggered one with the tokens the clean "
           "sentence lacks <mark>marked</mark>.</p><ol class=\"sentences\">";
      for (size_t i = 0; i < n; ++i) {
        std::string c = i < clean.size() && clean[i].is_string() ? clean[i].get<std::string>() : "";
        std::string t = i < trig.size() && trig[i].is_string() ? trig[i].get<std::string>() : "";
        h += "<li>";
        if (!c.empty()) h += "<div class=\"clean\">clean: " + esc(c) + "</div>";
        h += "<div class=\"triggered\">triggered: " + mark_trigger(c, t) + "</div></li>";
      }
      h += "</ol>";
    }
  }
  return h + "</section>";
}

std::string cost_section(const std::vector<Cell>& cells) {
  std::string h = "<section id=\"cost\"><h2>Cost</h2>";
  h += "<p class=\"legendline\">Wall-clock seconds and peak resident memory (the process's high-water mark at the end "
       "of the stage) per stage. The <code>none</code> row's <code>train</code> stage is the suspect model's "
       "training, when it ran in this invocation.</p>";
  std::vector<std::string> stage_names;
  for (const auto& c : cells)
    for (const json* r : c.rows)
      if (r->contains("stages") && (*r)["stages"].is_array())
        for (const auto& st : (*r)["stages"]) {
          auto n = text(st, "name", "?");
          if (std::find(stage_names.begin(), stage_names.end(), n) == stage_names.end()) stage_names.push_back(n);
        }
  if (cells.empty()) return h + "<p>No finished runs yet.</p></section>";
  h += "<div class=\"charts\">";
  for (const auto& c : cells) h += cost_chart(c, stage_names);
  h += "</div>";
  h += "<table class=\"cost\"><thead><tr><th class=\"l\">dataset</th><th class=\"l\">attack</th><th>seed</th><th "
       "class=\"l\">defense</th><th class=\"l\">stage</th><th>seconds</th><th>peak RSS MB</th></tr></thead><tbody>";
  for (const auto& c : cells)
    for (const json* rp : c.rows) {
      const json& r = *rp;
      const json& st = r.contains("stages") && r["stages"].is_array() ? r["stages"] : json::array();
      auto lead = fmt::format("<td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td>",
                              esc(c.dataset), esc(c.attack), esc(c.seed), esc(text(r, "defense")));
      double sum = 0;
      for (const auto& s : st) {
        h += fmt::format("<tr>{}<td class=\"l\">{}</td><td>{:.1f}</td><td>{:.0f}</td></tr>", lead,
                         esc(text(s, "name", "?")), num(s, "seconds"), num(s, "peak_rss_mb"));
        sum += num(s, "seconds");
      }
      h += fmt::format("<tr><th class=\"l\" colspan=\"4\">{} × {} × {}</th><th class=\"l\">total</th><th>{}</th><th></th></tr>",
                       esc(c.dataset), esc(c.attack), esc(text(r, "defense")),
                       has_num(r, "seconds") || sum > 0 ? fmt::format("{:.1f}", std::max(sum, num(r, "seconds"))) : "–");
    }
  h += "</tbody></table></section>";
  return h;
}

std::string provenance_section(const json& doc) {
  std::set<std::string> seeds;
  if (doc.contains("runs") && doc["runs"].is_array())
    for (const auto& r : doc["runs"]) seeds.insert(text(r, "seed", "?"));
  if (seeds.empty() && doc.contains("config") && doc["config"].is_object()) seeds.insert(text(doc["config"], "seed", "?"));
  std::string s;
  for (const auto& x : seeds) s += (s.empty() ? "" : ", ") + x;
  std::string h = "<section id=\"provenance\"><h2>Provenance</h2><table class=\"provenance\"><tbody>";
  h += fmt::format("<tr><th class=\"l\">antidote version</th><td class=\"l\">{}</td></tr>", esc(text(doc, "version", "?")));
  h += fmt::format("<tr><th class=\"l\">seed(s)</th><td class=\"l\">{}</td></tr>", esc(s.empty() ? "–" : s));
  h += fmt::format("<tr><th class=\"l\">threads</th><td class=\"l\">{}</td></tr>", esc(text(doc, "threads", "?")));
  h += fmt::format("<tr><th class=\"l\">device</th><td class=\"l\">{}</td></tr>", esc(text(doc, "device", "cpu")));
  if (has_num(doc, "seconds"))
    h += fmt::format("<tr><th class=\"l\">total seconds</th><td class=\"l\">{:.1f}</td></tr>", num(doc, "seconds"));
  h += "</tbody></table><h3>Config</h3><pre class=\"config\">";
  h += esc(doc.contains("config") ? doc["config"].dump(2) : "{}");
  h += "</pre></section>";
  return h;
}

}  // namespace

std::string render_identification_html(const json& id) {
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                  "<title>antidote identification</title><style>";
  h += kStyle;
  h += "#flagged td.l{white-space:normal;overflow-wrap:anywhere}</style></head><body>";
  h += fmt::format("<header><h1>antidote identification</h1><p>method {} · {} training rows</p></header><main>",
                   esc(text(id, "method", "?")), esc(text(id, "rows", "?")));
  h += "<section id=\"summary\"><h2>In brief</h2><table class=\"provenance\"><tbody>";
  auto row = [&](const std::string& k, const std::string& v) {
    h += "<tr><th class=\"l\">" + esc(k) + "</th><td class=\"l\">" + esc(v) + "</td></tr>";
  };
  row("inferred target label", text(id, "target", "–"));
  row("rows flagged", id.contains("flagged") && id["flagged"].is_array() ? std::to_string(id["flagged"].size()) : "0");
  row("confidence (share of the most suspect rows with the target label)", pct(id, "confidence") + " %");
  if (id.contains("detection") && id["detection"].is_object())
    row("against the ground truth", fmt::format("precision {} %, recall {} % of {} poisoned rows",
                                                pct(id["detection"], "precision"), pct(id["detection"], "recall"),
                                                text(id["detection"], "poisoned", "?")));
  double seconds = 0;
  if (id.contains("stages") && id["stages"].is_array())
    for (const auto& s : id["stages"]) seconds += num(s, "seconds");
  row("seconds", fmt::format("{:.1f}", seconds));
  h += "</tbody></table>";
  if (id.contains("warning") && id["warning"].is_string())
    h += "<p class=\"legendline\"><strong>Identification is unsure:</strong> " + esc(id["warning"].get<std::string>()) +
         ".</p>";
  h += "</section>";
  if (id.contains("histogram") && id["histogram"].is_object())
    h += "<section id=\"scores\"><h2>Scores</h2><div class=\"charts\">" +
         histogram_chart(id["histogram"], "identification scores", "identify") + "</div></section>";
  h += "<section id=\"flagged\"><h2>Flagged rows</h2><table><thead><tr><th>rank</th><th>row</th><th>label</th>"
       "<th>score</th><th class=\"l\">text</th></tr></thead><tbody>";
  if (id.contains("flagged") && id["flagged"].is_array())
    for (const auto& r : id["flagged"])
      h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4g}</td><td class=\"l\">{}</td></tr>",
                       text(r, "rank"), text(r, "row"), text(r, "label"), num(r, "score"), esc(text(r, "text")));
  h += "</tbody></table></section></main><footer id=\"end\">Written by antidote. Self-contained: inline CSS and "
       "SVG, no scripts, nothing fetched.</footer></body></html>\n";
  return h;
}

std::string render_html_report(const json& doc) {
  const json& runs = doc.contains("runs") ? doc["runs"] : json::array();
  auto cells = group_cells(runs);
  const auto seeds = seeds_section(cells);  // "" unless some cell has several seeds
  size_t nruns = runs.is_array() ? runs.size() : 0;
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                  "<title>antidote report</title><style>";
  h += kStyle;
  h += "</style></head><body>";
  h += fmt::format(
      "<header><h1>antidote report</h1><p>{} run(s) in {} cell(s) · antidote {} · threads {} · device {}</p></header>",
      nruns, cells.size(), esc(text(doc, "version", "?")), esc(text(doc, "threads", "?")),
      esc(text(doc, "device", "cpu")));
  h += "<nav><a href=\"#summary\">in brief</a><a href=\"#results\">results</a>";
  if (!seeds.empty()) h += "<a href=\"#seeds\">over seeds</a>";
  h += "<a href=\"#charts\">charts</a>"
       "<a href=\"#bedkd\">BeDKD</a><a href=\"#ntml\">NT-ML</a><a href=\"#examples\">attacks</a>"
       "<a href=\"#cost\">cost</a><a href=\"#provenance\">config</a></nav><main>";
  h += summary_section(cells);
  h += results_section(cells);
  h += seeds;
  h += charts_section(cells);
  h += bedkd_section(cells);
  h += other_trajectories_section(cells);
  h += ntml_section(cells);
  h += examples_section(doc);
  h += cost_section(cells);
  h += provenance_section(doc);
  h += "</main><footer id=\"end\">Written by antidote " + esc(text(doc, "version", "?")) +
       ". Self-contained: inline CSS and SVG, no scripts, nothing fetched.</footer></body></html>\n";
  return h;
}

}  // namespace antidote
