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

std::string evaluation_text(const Evaluation& e) {
  if (!e.asr_known()) return fmt::format("CACC {:.1f}% ASR unknown", 100 * e.cacc);
  return fmt::format("CACC {:.1f}% ASR {:.1f}% RA {:.1f}%", 100 * e.cacc, 100 * e.asr, 100 * e.ra);
}

namespace {
constexpr double kEps = 1e-9;  // a value printed as the limit passes

// The clean-accuracy half of a verdict: the drop against the suspect, and its reason.
void judge_cacc(Verdict& v, const Evaluation& after, const Evaluation& suspect) {
  v.cacc_known = true;
  v.cacc_drop = suspect.cacc - after.cacc;
  v.cacc_ok = v.cacc_drop <= kMaxCaccDrop + kEps;
  v.why +=
      fmt::format("; CACC drop {:.1f} points {} {:.0f}", 100 * v.cacc_drop, v.cacc_ok ? "≤" : ">", 100 * kMaxCaccDrop);
}

// The removal half: ASR against the limit, CACC against the suspect.
Verdict judge_removal(const Evaluation& after, double floor, const Evaluation* suspect) {
  Verdict v;
  v.limit = asr_limit(floor);
  if (!after.asr_known()) {
    // Without triggered rows only a fall in clean accuracy can be seen: it fails a
    // defense, but nothing can pass one.
    v.verdict = "unknown";
    v.why = "ASR unknown (no triggered test set)";
    if (suspect) judge_cacc(v, after, *suspect);
    if (v.cacc_known && !v.cacc_ok) v.verdict = "fail";
    return v;
  }
  v.asr_ok = after.asr <= v.limit + kEps;
  v.why = fmt::format("ASR {:.1f}% {} {:.1f}%", 100 * after.asr, v.asr_ok ? "≤" : ">", 100 * v.limit);
  if (!suspect) {
    v.verdict = v.asr_ok ? "unknown" : "fail";
    v.why += "; no suspect row to compare CACC with";
    return v;
  }
  judge_cacc(v, after, *suspect);
  if (!backdoor_learned(suspect->asr)) {
    v.verdict = "unknown";
    v.why += fmt::format("; the suspect's ASR is {:.1f}%: it never learned the backdoor", 100 * suspect->asr);
    return v;
  }
  v.verdict = v.asr_ok && v.cacc_ok ? "success" : "fail";
  return v;
}

// The repair half, judged where the backdoor was removed (a failed run is not a repair).
void judge_repair(Verdict& v, const Evaluation& after) {
  if (v.verdict != "success" || std::isnan(after.ra)) return;
  v.ra_gap = after.cacc - after.ra;
  const bool close = v.ra_gap <= kMaxRaGap + kEps;
  v.repair = close ? "repaired" : "not repaired";
  v.repair_why = fmt::format("RA {:.1f}% is {:.1f} points under CACC {:.1f}% ({} {:.0f})", 100 * after.ra,
                             100 * v.ra_gap, 100 * after.cacc, close ? "≤" : ">", 100 * kMaxRaGap);
}

}  // namespace

Verdict purification_verdict(const Evaluation& after, double floor, const Evaluation* suspect) {
  Verdict v = judge_removal(after, floor, suspect);
  judge_repair(v, after);
  return v;
}

std::string verdict_sentence(const Verdict& v) {
  std::string s = fmt::format("{} ({})", verdict_word(v.verdict), v.why);
  if (!v.repair.empty()) s += fmt::format("; {}: {}", v.repair, v.repair_why);
  return s;
}

}  // namespace antidote
