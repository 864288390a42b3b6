// report.html: sections and charts present, self-contained, escaped, thumbnails
// decode, and the success/failure highlighting follows the verdict's rule.
#include <gtest/gtest.h>
#include <zlib.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "antidote/report/results.hpp"

using nlohmann::json;

namespace {

json run_row(const std::string& defense, double cacc, double asr, double floor, const std::string& attack = "badnets") {
  return {{"dataset", "fmnist"},
          {"model", "cnn"},
          {"attack", attack},
          {"poison_rate", 0.1},
          {"target", 0},
          {"seed", 7},
          {"defense", defense},
          {"clean_samples", defense == "none" ? 0 : 500},
          {"cacc", cacc},
          {"asr", asr},
          {"asr_floor", floor},
          {"ra", 1.0 - asr},
          {"pcc", 0.1},
          {"der", 0.5},
          {"detection", nullptr},
          {"stages", json::array({{{"name", defense == "none" ? "train" : "finetune"}, {"seconds", 3.5}, {"peak_rss_mb", 812.0}}})},
          {"seconds", 3.6},
          {"details", json::object()}};
}

json image(int c, int h, int w, int seed) {
  std::vector<int> px(static_cast<size_t>(c * h * w));
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<int>((i * 37 + seed * 11) % 256);
  return {{"shape", {c, h, w}}, {"pixels", px}};
}

json fixture() {
  json doc;
  doc["version"] = "9.8.7-test";
  doc["threads"] = 2;
  doc["device"] = "cpu";
  doc["seconds"] = 42.0;
  doc["config"] = {{"seed", 7},
                   {"note", "<script>alert('x')</script> & \"quoted\""},
                   {"dataset", {{"name", "fmnist"}, {"path", "https://example.org/data"}}}};
  json runs = json::array();
  // Cell 1 (badnets, floor 2%): bar is ASR <= 5%, CACC drop <= 2 points vs 0.90.
  runs.push_back(run_row("none", 0.90, 0.99, 0.02));
  runs.push_back(run_row("good", 0.885, 0.04, 0.02));      // success
  runs.push_back(run_row("edge", 0.88, 0.05, 0.02));       // exactly on both bars: success
  runs.push_back(run_row("asrbad", 0.90, 0.30, 0.02));     // ASR too high: fail
  runs.push_back(run_row("caccbad", 0.85, 0.01, 0.02));    // CACC dropped 5 points: fail
  runs.push_back(run_row("floorhi", 0.90, 0.12, 0.10));    // ASR 12% <= floor 10% + 3: success
  // BeDKD with trajectory and identification histogram.
  json bedkd = run_row("bedkd", 0.89, 0.02, 0.02);
  bedkd["detection"] = {{"precision", 0.9}, {"recall", 0.8}, {"f1", 0.85}, {"flagged", 120}};
  bedkd["details"]["trajectory"] = json::array();
  for (int e = 1; e <= 5; ++e)
    bedkd["details"]["trajectory"].push_back({{"epoch", e}, {"cacc", 0.8 + 0.01 * e}, {"asr", 0.5 / e}, {"ra", 0.5 + 0.05 * e}});
  std::vector<int> ph(20, 0), ch(20, 0);
  for (int i = 0; i < 20; ++i) ph[i] = i < 5 ? 20 - i : 1, ch[i] = i > 10 ? 100 + i : 3;
  bedkd["details"]["identification"] = {{"bin_max", 2.5},  {"poisoned_hist", ph}, {"clean_hist", ch},
                                        {"auroc", 0.973}, {"poisoned_mean", 0.3}, {"clean_mean", 1.9}};
  bedkd["section"] = {{"id", "bedkd"}, {"title", "BeDKD"}, {"legend", "BEDKD-LEGEND"}, {"layout", "distillation"}};
  runs.push_back(bedkd);
  // NT-ML with its stage table and verdict.
  json ntml = run_row("ntml", 0.87, 0.20, 0.02);
  ntml["details"]["stages"] = json::array(
      {{{"stage", "after NT"}, {"model", "T"}, {"cacc", 0.9}, {"asr", 0.99}, {"ra", 0.01}, {"pcc", 0.05}},
       {{"stage", "after NT"}, {"model", "S"}, {"cacc", 0.4}, {"asr", 0.1}, {"ra", 0.3}, {"pcc", 0.5}},
       {{"stage", "after ML"}, {"model", "T"}, {"cacc", 0.88}, {"asr", 0.5}, {"ra", 0.4}, {"pcc", 0.2}},
       {{"stage", "after ML"}, {"model", "S"}, {"cacc", 0.87}, {"asr", 0.2}, {"ra", 0.7}, {"pcc", 0.1}},
       {{"stage", "control: ML without NT"}, {"model", "S"}, {"cacc", 0.86}, {"asr", 0.9}, {"ra", 0.1}, {"pcc", 0.1}}});
  ntml["details"]["verdict"] = "abstract's checks after NT: NTML-VERDICT-MARKER both hold";
  ntml["section"] = {{"id", "ntml"}, {"title", "NT-ML"}, {"legend", "NTML-LEGEND"}, {"layout", "stages"}};
  runs.push_back(ntml);
  // Cell 2: a text attack without a `none` row.
  auto t = run_row("ft", 0.8, 0.01, 0.0, "badnet-word");
  t["dataset"] = "sst2";
  runs.push_back(t);
  doc["runs"] = runs;

  json ex_img = {{"dataset", "fmnist"}, {"attack", "badnets"}, {"modality", "image"}};
  ex_img["clean"] = json::array({image(1, 28, 28, 1), image(3, 8, 10, 2)});
  ex_img["triggered"] = json::array({image(1, 28, 28, 3), image(3, 8, 10, 4)});
  json ex_txt = {{"dataset", "sst2"}, {"attack", "badnet-word"}, {"modality", "text"}};
  ex_txt["clean"] = json::array({"the movie was fine", "a <b>bold</b> claim"});
  ex_txt["triggered"] = json::array({"the cf movie was fine", "a <b>bold</b> mn claim see http://evil.example"});
  doc["examples"] = json::array({ex_img, ex_txt});
  return doc;
}

std::string verdict_of(const std::string& html, const std::string& defense) {
  auto p = html.find("data-defense=\"" + defense + "\"");
  if (p == std::string::npos) return "missing";
  auto tr = html.rfind("<tr", p);
  auto q = html.find("data-verdict=\"", p);
  if (q == std::string::npos || tr == std::string::npos) return "missing";
  q += 14;
  std::string v = html.substr(q, html.find('"', q) - q);
  // The row's class carries the same verdict (that is what colours it).
  EXPECT_NE(html.substr(tr, p - tr).find("class=\"run " + v + "\""), std::string::npos) << defense;
  return v;
}

std::string base64_decode(const std::string& s) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    int v = val(c);
    if (v < 0) ADD_FAILURE() << "bad base64 character " << int(c);
    buf = (buf << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buf >> bits) & 0xFF);
    }
  }
  return out;
}

uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) | (uint32_t(uint8_t(s[at + 2])) << 8) |
         uint32_t(uint8_t(s[at + 3]));
}

struct Png {
  uint32_t width = 0, height = 0;
  int colour = -1;
  std::string pixels;  // filter bytes stripped
};

Png decode_png(const std::string& png) {
  Png out;
  EXPECT_GE(png.size(), 8u + 25u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  std::string idat;
  size_t at = 8;
  bool ended = false;
  while (at + 12 <= png.size()) {
    uint32_t len = be32(png, at);
    std::string type = png.substr(at + 4, 4);
    std::string data = png.substr(at + 8, len);
    uint32_t crc = be32(png, at + 8 + len);
    std::string body = png.substr(at + 4, 4 + len);
    EXPECT_EQ(crc, crc32(0L, reinterpret_cast<const Bytef*>(body.data()), body.size())) << type;
    if (type == "IHDR") {
      out.width = be32(data, 0);
      out.height = be32(data, 4);
      EXPECT_EQ(uint8_t(data[8]), 8);
      out.colour = uint8_t(data[9]);
    } else if (type == "IDAT") {
      idat += data;
    } else if (type == "IEND") {
      ended = true;
    }
    at += 12 + len;
  }
  EXPECT_TRUE(ended);
  int ch = out.colour == 2 ? 3 : 1;
  uLongf raw_len = out.height * (1 + out.width * ch);
  std::string raw(raw_len, '\0');
  EXPECT_EQ(uncompress(reinterpret_cast<Bytef*>(&raw[0]), &raw_len, reinterpret_cast<const Bytef*>(idat.data()),
                       idat.size()),
            Z_OK);
  EXPECT_EQ(raw_len, out.height * (1 + out.width * ch));
  for (uint32_t y = 0; y < out.height; ++y) {
    EXPECT_EQ(raw[y * (1 + out.width * ch)], 0);
    out.pixels += raw.substr(y * (1 + out.width * ch) + 1, out.width * ch);
  }
  return out;
}

std::vector<std::string> data_uris(const std::string& html) {
  std::vector<std::string> out;
  const std::string key = "src=\"data:image/png;base64,";
  for (size_t p = html.find(key); p != std::string::npos; p = html.find(key, p + 1)) {
    size_t b = p + key.size();
    out.push_back(html.substr(b, html.find('"', b) - b));
  }
  return out;
}

}  // namespace

TEST(Report, HasEverySectionAndChart) {
  auto html = antidote::render_html_report(fixture());
  for (const char* id : {"summary", "results", "charts", "bedkd", "ntml", "examples", "cost", "provenance"})
    EXPECT_NE(html.find(std::string("<section id=\"") + id + "\""), std::string::npos) << id;
  for (const char* chart : {"asr", "cacc", "trajectory", "identification", "cost"})
    EXPECT_NE(html.find(std::string("class=\"chart\" data-chart=\"") + chart + "\""), std::string::npos) << chart;
  // One ASR and one CACC chart per dataset × attack cell (two cells).
  auto count = [&](const std::string& s) {
    size_t n = 0;
    for (size_t p = html.find(s); p != std::string::npos; p = html.find(s, p + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("data-chart=\"asr\""), 2u);
  EXPECT_EQ(count("data-chart=\"cacc\""), 2u);
  EXPECT_EQ(count("data-chart=\"cost\""), 2u);
  // BeDKD trajectory: five epochs plus the suspect at epoch 0, for each of CACC, ASR, RA.
  EXPECT_EQ(count("data-series=\"CACC\""), 1u);
  EXPECT_EQ(count("data-series=\"ASR\""), 1u);
  EXPECT_NE(html.find("AUROC 0.973"), std::string::npos);
  // NT-ML stage table, control row and verdict.
  EXPECT_NE(html.find("class=\"ntml-stages\""), std::string::npos);
  EXPECT_NE(html.find("control: ML without NT"), std::string::npos);
  EXPECT_NE(html.find("NTML-VERDICT-MARKER"), std::string::npos);
  // Each declared section has its heading, its legend and a link in the navigation.
  for (const char* marker :
       {"BEDKD-LEGEND", "NTML-LEGEND", "<a href=\"#bedkd\">BeDKD</a>", "<a href=\"#ntml\">NT-ML</a>"})
    EXPECT_NE(html.find(marker), std::string::npos) << marker;
  // Cost per stage and provenance.
  EXPECT_NE(html.find("812"), std::string::npos);
  EXPECT_NE(html.find("9.8.7-test"), std::string::npos);
  EXPECT_NE(html.find("<td class=\"l\">7</td>"), std::string::npos);  // the seed
  EXPECT_NE(html.find("</html>"), std::string::npos);
}

TEST(Report, SelfContainedAndEscaped) {
  auto html = antidote::render_html_report(fixture());
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("@import"), std::string::npos);
  EXPECT_EQ(html.find("url("), std::string::npos);
  // Every src/href is a data URI or an in-page anchor.
  for (const std::string attr : {"src=\"", "href=\""})
    for (size_t p = html.find(attr); p != std::string::npos; p = html.find(attr, p + 1)) {
      auto v = html.substr(p + attr.size(), 12);
      EXPECT_TRUE(v.rfind("data:image/", 0) == 0 || v[0] == '#') << v;
    }
  EXPECT_NE(html.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; \\&quot;quoted\\&quot;"), std::string::npos);
  EXPECT_NE(html.find("a &lt;b&gt;bold&lt;/b&gt;"), std::string::npos);
  EXPECT_EQ(html.find("<b>bold</b>"), std::string::npos);
  EXPECT_NE(html.find("https&#58;//example.org/data"), std::string::npos);  // shown, not a reference
}

TEST(Report, ThumbnailsArePngDataUris) {
  auto doc = fixture();
  auto html = antidote::render_html_report(doc);
  auto uris = data_uris(html);
  ASSERT_EQ(uris.size(), 4u);  // two pairs
  // Order: clean 0, triggered 0, clean 1, triggered 1.
  const json* src[] = {&doc["examples"][0]["clean"][0], &doc["examples"][0]["triggered"][0],
                       &doc["examples"][0]["clean"][1], &doc["examples"][0]["triggered"][1]};
  for (size_t i = 0; i < uris.size(); ++i) {
    auto png = decode_png(base64_decode(uris[i]));
    const auto& img = *src[i];
    int c = img["shape"][0], h = img["shape"][1], w = img["shape"][2];
    EXPECT_EQ(png.width, static_cast<uint32_t>(w));
    EXPECT_EQ(png.height, static_cast<uint32_t>(h));
    EXPECT_EQ(png.colour, c == 3 ? 2 : 0);
    // Pixels round-trip (CHW in the document, interleaved in the PNG).
    ASSERT_EQ(png.pixels.size(), static_cast<size_t>(c * h * w));
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int k = 0; k < c; ++k)
          ASSERT_EQ(uint8_t(png.pixels[(y * w + x) * c + k]), img["pixels"][(k * h + y) * w + x].get<int>());
  }
  EXPECT_NE(html.find("image-rendering:pixelated"), std::string::npos);
  EXPECT_NE(html.find("width=\"84\" height=\"84\""), std::string::npos);  // 28 px scaled ×3
}

TEST(Report, TextTriggerIsMarked) {
  auto html = antidote::render_html_report(fixture());
  EXPECT_NE(html.find("the <mark>cf</mark> movie was fine"), std::string::npos);
  EXPECT_NE(html.find("a &lt;b&gt;bold&lt;/b&gt; <mark>mn</mark> claim"), std::string::npos);
  EXPECT_EQ(html.find("<mark>movie</mark>"), std::string::npos);
}

TEST(Report, SuccessAndFailureHighlighting) {
  auto html = antidote::render_html_report(fixture());
  EXPECT_EQ(verdict_of(html, "none"), "reference");
  EXPECT_EQ(verdict_of(html, "good"), "success");
  EXPECT_EQ(verdict_of(html, "edge"), "success");
  EXPECT_EQ(verdict_of(html, "asrbad"), "fail");
  EXPECT_EQ(verdict_of(html, "caccbad"), "fail");
  EXPECT_EQ(verdict_of(html, "floorhi"), "success");
  EXPECT_EQ(verdict_of(html, "bedkd"), "success");
  EXPECT_EQ(verdict_of(html, "ntml"), "fail");
  EXPECT_EQ(verdict_of(html, "ft"), "unknown");  // no `none` row in its cell to compare CACC with
  EXPECT_NE(html.find("class=\"bar success\" data-label=\"good\""), std::string::npos);
  EXPECT_NE(html.find("class=\"bar fail\" data-label=\"asrbad\""), std::string::npos);
  // A CACC only just too low fails.
  auto doc = fixture();
  doc["runs"][1]["cacc"] = 0.8789;
  EXPECT_EQ(verdict_of(antidote::render_html_report(doc), "good"), "fail");
}

TEST(Report, PartialDocumentsRender) {
  for (const json& doc : {json::object(), json{{"runs", json::array()}, {"examples", json::array()}},
                          json{{"runs", json::array({json{{"defense", "none"}, {"cacc", nullptr}, {"asr", nullptr}}})},
                               {"config", nullptr}}}) {
    std::string html;
    ASSERT_NO_THROW(html = antidote::render_html_report(doc)) << doc.dump();
    EXPECT_NE(html.find("</html>"), std::string::npos);
    EXPECT_EQ(html.find("<script"), std::string::npos);
  }
}

// results.md's seed summary. Worked by hand: CACC 75, 77, 79 % → mean 77.0, deviations
// ±2 and 0, sample variance (4 + 0 + 4) / 2 = 4, sd 2.0; ASR 10, 0, 20 → 10.0 ± 10.0;
// DER (0.9 + 0.95 + 1.0) / 3 = 0.950; detection precision over the two seeds that report
// it, 100 and 50 → 75.0 ± 35.4 (√(2·25²/1) = 35.36).
TEST(Report, SeedSummaryMeansAndSampleDeviation) {
  json doc{{"runs", json::array()}};
  const double cacc[] = {0.75, 0.77, 0.79}, asr[] = {0.1, 0.0, 0.2}, der[] = {0.9, 0.95, 1.0};
  for (int s = 0; s < 3; ++s) {
    auto r = run_row("bedkd", cacc[s], asr[s], 0.05);
    r["seed"] = s;
    r["der"] = der[s];
    r["detection"] = s == 2 ? json(nullptr) : json{{"precision", s == 0 ? 1.0 : 0.5}, {"recall", 0.1}, {"f1", 0.2}, {"flagged", 64}};
    doc["runs"].push_back(r);
  }
  doc["runs"].push_back(run_row("none", 0.9, 1.0, 0.05));  // one seed: a mean without a deviation
  auto md = antidote::seed_summary_markdown(doc);
  // The suspect is seed 7's, so seeds 0-2 have none to compare CACC with: ASR 10 % and
  // 20 % over the limit of max(5 %, 5 % + 3) fail, ASR 0 % is unclear: 0 of 2 judged.
  EXPECT_NE(md.find("| fmnist | cnn | badnets | 10.0 | 0 | bedkd | 500 | 3 | 77.0 ± 2.0 | 10.0 ± 10.0 | 5.0 ± 0.0 | "
                    "90.0 ± 10.0 | 0.950 | 75.0 ± 35.4 | 0 of 2 | 0 of 2 |"),
            std::string::npos)
      << md;
  EXPECT_NE(
      md.find("| fmnist | cnn | badnets | 10.0 | 0 | none | – | 1 | 90.0 | 100.0 | 5.0 | 0.0 | 0.500 | – | – | – |"),
      std::string::npos)
      << md;
  EXPECT_NE(antidote::results_markdown(doc).find("Mean ± standard deviation over seeds"), std::string::npos);
  // Every row with a single seed: no summary.
  json single{{"runs", json::array({run_row("none", 0.9, 1.0, 0.05), run_row("ft", 0.9, 0.5, 0.05)})}};
  EXPECT_EQ(antidote::seed_summary_markdown(single), "");
}

// report.html's "over seeds" section: present only with several seeds; it counts the seeds
// on which each defense removed the backdoor by the results table's verdict. Two seeds of
// badnets: ft removes it on seed 0 (ASR 0.02 ≤ 0.05, CACC drop 0.5) and fails on seed 1
// (ASR 0.60), so "1 of 2"; ft's CACC 0.905 and 0.895 → 90.0 ± 0.7 (sd = 0.01/√2·100).
TEST(Report, OverSeedsSectionCountsRemovals) {
  json doc{{"runs", json::array()}};
  for (int s = 0; s < 2; ++s) {
    auto none = run_row("none", 0.91 - 0.01 * s, 1.0, 0.01);
    auto ft = run_row("ft", 0.905 - 0.01 * s, s == 0 ? 0.02 : 0.60, 0.01);
    none["seed"] = ft["seed"] = s;
    doc["runs"].push_back(none);
    doc["runs"].push_back(ft);
  }
  auto html = antidote::render_html_report(doc);
  ASSERT_NE(html.find("<section id=\"seeds\""), std::string::npos);
  EXPECT_NE(html.find("href=\"#seeds\""), std::string::npos);
  // RA = 1 - ASR here: 98 % and 40 %; seed 0's removal is also a repair (RA above CACC).
  EXPECT_NE(html.find("<td class=\"l\">ft</td><td>500</td><td>2</td><td>90.0 ± 0.7</td><td>31.0 ± 41.0</td><td>69.0 ± "
                      "41.0</td><td>1 of 2</td><td>1 of 2</td>"),
            std::string::npos)
      << html.substr(html.find("<section id=\"seeds\""), 1500);
  EXPECT_NE(html.find("<td class=\"l\">none</td><td>–</td><td>2</td><td>90.5 ± 0.7</td><td>100.0 ± 0.0</td><td>0.0 ± "
                      "0.0</td><td>–</td><td>–</td>"),
            std::string::npos);
  // One seed: no section, no link.
  json one{{"runs", json::array({run_row("none", 0.9, 1.0, 0.01), run_row("ft", 0.9, 0.02, 0.01)})}};
  auto single = antidote::render_html_report(one);
  EXPECT_EQ(single.find("id=\"seeds\""), std::string::npos);
  EXPECT_EQ(single.find("href=\"#seeds\""), std::string::npos);
}

// What a reader needs at a glance: each verdict's reason in the page (not only on hover),
// unequal clean budgets called out, the CACC axis spanning the values that decide the
// verdict, the pass bands shaded, the suspect's training curve, per-class confusions,
// links to the purified models, the flagged rows' threshold on the histogram, and a
// notice while a bench is still running.
TEST(Report, DecisionsAreVisibleWithoutHovering) {
  auto doc = fixture();
  auto& runs = doc["runs"];
  runs[6]["clean_samples"] = 4000;  // bedkd
  runs[6]["model_file"] = "fmnist-cnn-badnets-bedkd-1.pt";
  runs[6]["details"]["identification"]["threshold"] = 0.6;
  runs[6]["details"]["identification"]["flagged"] = 120;
  runs[6]["confusion"] = json::array({json::array({90, 10}), json::array({5, 95})});
  runs[0]["confusion"] = json::array({json::array({80, 20}), json::array({0, 100})});
  runs[0]["details"]["training_curve"] = json::array(
      {{{"epoch", 1}, {"cacc", 0.7}, {"asr", 0.4}, {"ra", 0.5}}, {{"epoch", 2}, {"cacc", 0.9}, {"asr", 0.99}}});
  const auto html = antidote::render_html_report(doc);
  // The verdicts' reasons, in plain text in the summary.
  EXPECT_NE(html.find("<li data-summary=\"asrbad\"><span class=\"badge fail\">failed</span> <b>asrbad</b>: ASR 30.0%"),
            std::string::npos);
  // BeDKD's budget against the others'.
  EXPECT_NE(html.find("<b>Unequal clean budgets:</b> good, edge, asrbad, caccbad, floorhi, ntml 500 rows; bedkd 4000 "
                      "rows"),
            std::string::npos);
  EXPECT_NE(html.find("<td class=\"more\">4000</td>"), std::string::npos);
  // CACC of the first cell: values 85–90 %, suspect − 2 = 88 %: the axis spans 80–95 %.
  EXPECT_NE(html.find("data-chart=\"cacc\" data-cell=\"fmnist-badnets-7\" data-axis=\"80-95\""), std::string::npos);
  EXPECT_NE(html.find("data-chart=\"asr\" data-cell=\"fmnist-badnets-7\" data-axis=\"0-100\""), std::string::npos);
  EXPECT_NE(html.find("<rect class=\"pass\""), std::string::npos);
  for (const char* id : {"training", "confusion"})
    EXPECT_NE(html.find(std::string("<section id=\"") + id + "\""), std::string::npos) << id;
  EXPECT_NE(html.find("data-chart=\"training\""), std::string::npos);
  EXPECT_NE(html.find("<table class=\"confusion\" data-defense=\"bedkd\">"), std::string::npos);
  EXPECT_NE(html.find("title=\"95 of 100 rows of class 1 predicted 1\""), std::string::npos);
  EXPECT_NE(html.find("<a href=\"models/fmnist-cnn-badnets-bedkd-1.pt\""), std::string::npos);
  EXPECT_NE(html.find("<line class=\"threshold\""), std::string::npos);
  EXPECT_NE(html.find("◀ 120 flagged"), std::string::npos);
  EXPECT_EQ(html.find("In progress"), std::string::npos);
  doc["complete"] = false;
  doc["cells_total"] = 12;
  doc["warnings"] = json::array({"the purified model still sends 80% of the 64 flagged training rows to the target 0"});
  const auto running = antidote::render_html_report(doc);
  EXPECT_NE(running.find("<b>In progress:</b> 9 of 12 cells finished"), std::string::npos);
  EXPECT_NE(running.find("<b>Warning:</b> the purified model still sends 80%"), std::string::npos);
}

// NT-ML's section says when its control (ML without NT) beats it, and its own checks are
// not mistaken for the verdict.
TEST(Report, NtmlControlThatBeatsTheMethodIsSaid) {
  auto doc = fixture();
  doc["runs"][7]["details"]["control_beats_ntml"] = true;
  const auto html = antidote::render_html_report(doc);
  EXPECT_NE(html.find("The control beats the method here"), std::string::npos);
  EXPECT_NE(html.find("its control (the same without its first stage) did at least as well"), std::string::npos);
  EXPECT_NE(html.find("<b>The method's own checks</b> (not the verdict of the results table)"), std::string::npos);
  EXPECT_NE(antidote::results_markdown(doc).find("**The control beats the method on this cell**"), std::string::npos);
}

// results.md has a verdict column, the rule of the report's results table.
TEST(Report, MarkdownHasTheVerdictOfEveryRow) {
  const auto md = antidote::results_markdown(fixture());
  EXPECT_NE(md.find("| seconds | verdict |"), std::string::npos);
  auto line_of = [&](const std::string& defense) {
    auto p = md.find("| " + defense + " |");
    return p == std::string::npos ? std::string() : md.substr(p, md.find('\n', p) - p);
  };
  EXPECT_NE(line_of("none").find("| suspect |"), std::string::npos) << line_of("none");
  EXPECT_NE(line_of("good").find("| removed, repaired |"), std::string::npos) << line_of("good");
  EXPECT_NE(line_of("asrbad").find("| failed |"), std::string::npos) << line_of("asrbad");
  EXPECT_NE(line_of("ft").find("| unclear |"), std::string::npos) << line_of("ft");
}

// The repair is judged apart from the removal: a removal whose triggered rows mostly land
// on a wrong class (RA 60 % against CACC 88.5 %) is "not repaired", in the page, in
// results.md and in results.csv; one with RA near CACC is "repaired".
TEST(Report, RepairIsJudgedApartFromRemoval) {
  auto doc = fixture();
  doc["runs"][1]["ra"] = 0.60;  // good: CACC 88.5 %, ASR 4 %
  const auto html = antidote::render_html_report(doc);
  EXPECT_NE(html.find("<li data-summary=\"good\"><span class=\"badge success\">removed</span> <span class=\"badge "
                      "unrepaired\">not repaired</span> <b>good</b>: ASR 4.0% ≤ 5.0%; CACC drop 1.5 points ≤ 2; not "
                      "repaired: RA 60.0% is 28.5 points under CACC 88.5% (&gt; 10)"),
            std::string::npos);
  EXPECT_NE(html.find("<span class=\"badge repaired\">repaired</span> <b>edge</b>"), std::string::npos);
  EXPECT_NE(antidote::results_markdown(doc).find("| removed, not repaired |"), std::string::npos);
  const auto csv = antidote::results_csv(doc);
  EXPECT_NE(csv.find(",verdict,repair\n"), std::string::npos);
  EXPECT_NE(csv.find(",success,not repaired\n"), std::string::npos);
  EXPECT_NE(csv.find(",fail,\n"), std::string::npos);  // asrbad: no repair judged
}

// A defense at several clean budgets: its runs are named by budget, the over-seeds table
// keeps the budgets apart, and the "clean budget" section draws CACC, ASR and RA against
// the budget, each point the mean over the seeds (ft at 500 rows: ASR 2 % and 4 % -> 3 %).
TEST(Report, CleanBudgetSweepIsDrawnAgainstTheBudget) {
  json doc{{"runs", json::array()}};
  for (int s = 0; s < 2; ++s) {
    auto none = run_row("none", 0.90, 1.0, 0.01);
    none["seed"] = s;
    doc["runs"].push_back(none);
    for (int budget : {100, 500}) {
      auto ft = run_row("ft", budget == 100 ? 0.80 : 0.89, budget == 100 ? 0.50 : 0.02 + 0.02 * s, 0.01);
      ft["seed"] = s;
      ft["clean_samples"] = budget;
      doc["runs"].push_back(ft);
    }
  }
  const auto html = antidote::render_html_report(doc);
  ASSERT_NE(html.find("<section id=\"budget\">"), std::string::npos);
  EXPECT_NE(html.find("href=\"#budget\""), std::string::npos);
  for (const char* chart : {"budget-cacc", "budget-asr", "budget-ra"})
    EXPECT_NE(html.find(std::string("data-chart=\"") + chart + "\""), std::string::npos) << chart;
  // CACC on the scale of the pass line: values 80-89 %, suspects 90 % - 2 = 88 %: 75-90 %.
  EXPECT_NE(html.find("data-chart=\"budget-cacc\" data-cell=\"fmnist-badnets-budget\" data-axis=\"75-90\""),
            std::string::npos);
  EXPECT_NE(html.find("data-chart=\"budget-asr\" data-cell=\"fmnist-badnets-budget\" data-axis=\"0-100\""),
            std::string::npos);
  EXPECT_NE(html.find("<title>ft at 500: 3.0%</title>"), std::string::npos);
  EXPECT_NE(html.find("<title>ft at 100: 50.0%</title>"), std::string::npos);
  EXPECT_NE(html.find("text-anchor=\"middle\">500</text>"), std::string::npos);
  EXPECT_NE(html.find("<li data-summary=\"ft @100\">"), std::string::npos);
  EXPECT_NE(html.find("<td class=\"l\">ft</td><td>100</td><td>2</td>"), std::string::npos);
  EXPECT_NE(html.find("<td class=\"l\">ft</td><td>500</td><td>2</td>"), std::string::npos);
  // One budget per defense: no such section.
  const auto plain = antidote::render_html_report(fixture());
  EXPECT_EQ(plain.find("id=\"budget\""), std::string::npos);
  EXPECT_EQ(plain.find("href=\"#budget\""), std::string::npos);
}
