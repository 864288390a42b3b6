// report.html's pictures: SVG charts (bars, lines, histograms, stacked cost) and PNG
// thumbnails as data URIs, encoded here with zlib.
#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <optional>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "antidote/report/html_parts.hpp"

namespace antidote::html {
namespace {

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
  ihdr += char(8);                      // bit depth
  ihdr += char(channels == 3 ? 2 : 0);  // colour type: RGB or grey
  ihdr += std::string(3, '\0');         // compression, filter, interlace
  png_chunk(png, "IHDR", ihdr);
  png_chunk(png, "IDAT", z);
  png_chunk(png, "IEND", "");
  return png;
}

}  // namespace

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

// ---------------------------------------------------------------- SVG charts

static const char* const kPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                       "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

namespace {

// The opening of a chart of fractions: the <svg> element, its title and the grid of a
// plot area at (L, T) of pw × ph spanning the fractions [axis.lo, axis.hi].
std::string percent_frame(const std::string& kind, const std::string& title, const std::string& cell_slug, double W,
                          double H, double L, double T, double pw, double ph, const Axis& axis = {}) {
  std::string s = fmt::format(
      "<svg class=\"chart\" data-chart=\"{}\" data-cell=\"{}\" data-axis=\"{:.0f}-{:.0f}\" viewBox=\"0 0 {} {}\" "
      "width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"{}\">",
      kind, esc(cell_slug), 100 * axis.lo, 100 * axis.hi, W, H, W, H, esc(title));
  s += fmt::format("<text class=\"title\" x=\"{}\" y=\"16\">{}</text>", L, esc(title));
  // Ticks at round percentages: the smallest step that gives at most six of them.
  const double lo = 100 * axis.lo, hi = 100 * axis.hi;
  double step = 25;
  for (double candidate : {1.0, 2.0, 5.0, 10.0, 20.0, 25.0})
    if ((hi - lo) / candidate <= 6) {
      step = candidate;
      break;
    }
  // (+ 0.0 turns the -0 that ceil gives just under zero into 0: no "-0%" tick.)
  for (double v = std::ceil(lo / step - 1e-9) * step + 0.0; v <= hi + 1e-9; v += step) {
    double y = T + ph - ph * (v - lo) / (hi - lo);
    s += fmt::format("<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/>", L, L + pw, y, y);
    s += fmt::format("<text class=\"tick\" x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.0f}%</text>", L - 4, y + 4, v);
  }
  return s;
}

}  // namespace

Axis decision_axis(const std::vector<double>& values, double mark) {
  double lo = mark, hi = mark;
  for (double v : values) lo = std::min(lo, v), hi = std::max(hi, v);
  // Whole 5-point steps around the values and the mark, with a little room below.
  lo = std::max(0.0, std::floor((lo - 0.03) * 20) / 20);
  hi = std::min(1.0, std::ceil((hi + 0.01) * 20) / 20);
  if (hi - lo < 0.1) lo = std::max(0.0, hi - 0.1);
  return {lo, hi};
}

// Vertical bars of a fraction with dashed reference lines and, optionally, the band of
// values that pass shaded.
std::string bar_chart(const std::string& kind, const std::string& title, const std::vector<Bar>& bars,
                      const std::vector<std::pair<double, std::string>>& lines, const std::string& cell_slug,
                      const Axis& axis, const std::optional<Axis>& pass) {
  const double W = 460, H = 260, L = 44, R = 10, T = 38, B = 46;
  const double pw = W - L - R, ph = H - T - B;
  auto Y = [&](double v) { return T + ph - ph * (std::clamp(v, axis.lo, axis.hi) - axis.lo) / (axis.hi - axis.lo); };
  std::string s = percent_frame(kind, title, cell_slug, W, H, L, T, pw, ph, axis);
  if (pass && pass->hi > pass->lo)
    s += fmt::format(
        "<rect class=\"pass\" x=\"{}\" y=\"{:.1f}\" width=\"{}\" height=\"{:.1f}\"><title>passes: {:.1f}–{:.1f}%"
        "</title></rect>",
        L, Y(pass->hi), pw, Y(pass->lo) - Y(pass->hi), 100 * pass->lo, 100 * pass->hi);
  const size_t n = std::max<size_t>(1, bars.size());
  const double slot = pw / n, bw = std::min(56.0, slot * 0.7);
  for (size_t i = 0; i < bars.size(); ++i) {
    const auto& b = bars[i];
    double x = L + slot * i + (slot - bw) / 2, y = Y(b.value), h = T + ph - y;
    s += fmt::format(
        "<rect class=\"bar {}\" data-label=\"{}\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" "
        "height=\"{:.1f}\"><title>{}: {:.1f}%</title></rect>",
        b.cls, esc(b.label), x, y, bw, std::max(h, 0.5), esc(b.label), 100 * b.value);
    s += fmt::format("<text class=\"value\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{:.1f}</text>", x + bw / 2,
                     y - 3, 100 * b.value);
    s += fmt::format("<text class=\"label\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>", x + bw / 2,
                     T + ph + 16, esc(b.label));
  }
  int nline = 0;
  for (const auto& [v, label] : lines) {
    if (!(v >= axis.lo && v <= axis.hi)) continue;
    s += fmt::format("<line class=\"ref\" x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/>", L, L + pw, Y(v), Y(v));
    s += fmt::format("<text class=\"reflabel\" x=\"{}\" y=\"{}\" text-anchor=\"end\">- - - {}</text>", W - R,
                     16 + 13 * nline++, esc(label));
  }
  s += fmt::format("<line class=\"axis\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>", L, L + pw, T + ph, T + ph);
  s += fmt::format("<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">defense</text>", L + pw / 2, H - 8);
  s += "</svg>";
  return s;
}

// Lines over epochs (y: the fractions of `axis`).
std::string line_chart(const std::string& kind, const std::string& title, const std::vector<Series>& series,
                       const std::string& xlabel, const std::string& cell_slug,
                       const std::vector<std::string>& xtick_labels, const Axis& axis) {
  const double W = 540, H = 270, L = 44, R = 116, T = 28, B = 40;
  const double pw = W - L - R, ph = H - T - B;
  double xmin = 1e300, xmax = -1e300;
  for (const auto& se : series)
    for (const auto& p : se.points) xmin = std::min(xmin, p.first), xmax = std::max(xmax, p.first);
  if (xmin > xmax) xmin = 0, xmax = 1;
  if (xmax - xmin < 1e-9) xmax = xmin + 1;
  auto X = [&](double x) { return L + pw * (x - xmin) / (xmax - xmin); };
  auto Y = [&](double v) { return T + ph - ph * (std::clamp(v, axis.lo, axis.hi) - axis.lo) / (axis.hi - axis.lo); };
  std::string s = percent_frame(kind, title, cell_slug, W, H, L, T, pw, ph, axis);
  // x ticks: every integer when few, else about eight; named ones at 0, 1, ... when given.
  const double span = xmax - xmin;
  const double step = span <= 10 || !xtick_labels.empty() ? 1 : std::ceil(span / 8);
  for (double x = std::ceil(xmin); x <= xmax + 1e-9; x += step) {
    const auto i = static_cast<size_t>(std::llround(x));
    s += fmt::format("<line class=\"grid\" x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{}\" y2=\"{}\"/>", X(x), X(x), T + ph,
                     T + ph + 4);
    s += fmt::format("<text class=\"tick\" x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>", X(x), T + ph + 16,
                     i < xtick_labels.size() ? esc(xtick_labels[i]) : std::to_string(std::llround(x)));
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
    for (const auto& p : se.points) {
      const auto i = static_cast<size_t>(std::llround(p.first));
      const std::string at = i < xtick_labels.size() ? esc(xtick_labels[i]) : fmt::format("{}", p.first);
      s += fmt::format(
          "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"><title>{} at {}: {:.1f}%</title></circle>",
          X(p.first), Y(p.second), se.color, esc(se.name), at, 100 * p.second);
    }
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
  for (size_t i = 0; i < bins; ++i) ymax = std::max({ymax, np > 0 ? hp[i] / np : 0.0, nc > 0 ? hc[i] / nc : 0.0});
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
  // The highest score among the flagged rows: the rows left of it are the ones acted on.
  if (has_num(id, "threshold") && bin_max > bin_min) {
    const double t = std::clamp((num(id, "threshold") - bin_min) / (bin_max - bin_min), 0.0, 1.0);
    s += fmt::format(
        "<line class=\"threshold\" x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\"><title>flagged: score ≤ "
        "{3:.4g}</title></line>",
        L + pw * t, T, T + ph, num(id, "threshold"));
    s += fmt::format("<text class=\"reflabel\" x=\"{:.1f}\" y=\"{}\">◀ {} flagged</text>", L + pw * t + 3, T + 10,
                     text(id, "flagged", "?"));
  }
  s += fmt::format("<line class=\"axis\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>", L, L + pw, T + ph, T + ph);
  for (int t = 0; t <= 4; ++t)
    s += fmt::format("<text class=\"tick\" x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.3g}</text>",
                     L + pw * t / 4.0, T + ph + 16, bin_min + (bin_max - bin_min) * t / 4.0);
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
  for (const RunRecord* r : cell.rows) {
    double sum = 0;
    for (const auto& st : r->stages) sum += st.seconds;
    tmax = std::max({tmax, r->seconds, sum});
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
    const RunRecord& r = *cell.rows[i];
    double y = T + rowh * i;
    s += fmt::format("<text class=\"label\" x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>", L - 6, y + 14,
                     esc(r.defense));
    double x = L, sum = 0;
    for (const auto& st : r.stages) {
      size_t k = std::find(stage_names.begin(), stage_names.end(), st.name) - stage_names.begin();
      double w = pw * st.seconds / tmax;
      s += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{}\" fill=\"{}\"><title>{}: {:.1f} s, peak "
          "{:.0f} MB</title></rect>",
          x, y + 3, std::max(w, 0.5), rowh - 6, kPalette[k % 10], esc(st.name), st.seconds, st.peak_rss_mb);
      x += w;
      sum += st.seconds;
    }
    s += fmt::format("<text class=\"value\" x=\"{:.1f}\" y=\"{:.1f}\">{:.1f} s</text>", x + 4, y + 14,
                     std::max(sum, r.seconds));
  }
  double ly = T + rowh * cell.rows.size() + 18, lx = L;
  std::set<std::string> present;
  for (const RunRecord* r : cell.rows)
    for (const auto& st : r->stages) present.insert(st.name);
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

}  // namespace antidote::html
