// The verdict on a defense run (verdict.hpp). Free of LibTorch, like its header: the
// report's code and the fuzz targets link it alone.
#include "antidote/metrics/verdict.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace antidote {

double asr_limit(double floor) { return std::max(kAsrTarget, floor >= 0 ? floor + kAsrOverFloor : 0.0); }

const char* verdict_word(const std::string& verdict) {
  if (verdict == "success") return "removed";
  if (verdict == "fail") return "failed";
  return "unclear";
}

bool backdoor_learned(double suspect_asr) { return suspect_asr >= kLearnedBackdoorAsr; }

Verdict purification_verdict(const Evaluation& after, double floor, const Evaluation* suspect) {
  constexpr double eps = 1e-9;  // a value printed as the limit passes
  Verdict v;
  v.limit = asr_limit(floor);
  v.asr_ok = after.asr <= v.limit + eps;
  v.why = fmt::format("ASR {:.1f}% {} {:.1f}%", 100 * after.asr, v.asr_ok ? "≤" : ">", 100 * v.limit);
  if (!suspect) {
    v.verdict = v.asr_ok ? "unknown" : "fail";
    v.why += "; no suspect row to compare CACC with";
    return v;
  }
  v.cacc_known = true;
  v.cacc_drop = suspect->cacc - after.cacc;
  v.cacc_ok = v.cacc_drop <= kMaxCaccDrop + eps;
  v.why +=
      fmt::format("; CACC drop {:.1f} points {} {:.0f}", 100 * v.cacc_drop, v.cacc_ok ? "≤" : ">", 100 * kMaxCaccDrop);
  if (!backdoor_learned(suspect->asr)) {
    v.verdict = "unknown";
    v.why += fmt::format("; the suspect's ASR is {:.1f}%: it never learned the backdoor", 100 * suspect->asr);
    return v;
  }
  v.verdict = v.asr_ok && v.cacc_ok ? "success" : "fail";
  return v;
}

}  // namespace antidote
