// What a defense run is judged by: the evaluation of a model and the verdict on it,
// defined once and read by the bench, its warnings and the report. Free of
// LibTorch, so that the report's code can include it cheaply.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace antidote {

// Fractions in [0, 1]. asr, ra and pcc are NaN when no triggered row was measured
// (the trigger is unknown); asr_known says so.
struct Evaluation {
  double cacc = 0, asr = 0, ra = 0, pcc = 0;
  // The clean test rows by true class (row) and predicted class (column); empty for more
  // than kMaxConfusionClasses classes, where a table of it would not be read.
  std::vector<std::vector<int64_t>> confusion;
  bool asr_known() const { return !std::isnan(asr); }
};
constexpr int64_t kMaxConfusionClasses = 20;

// Without ground truth: a purified model that still sends more than this share of the
// rows its defense flagged to the identified target may have kept the backdoor.
constexpr double kFlaggedKeptShare = 0.5;

// "CACC 88.4% ASR 1.2% RA 80.1%", or "CACC 88.4% ASR unknown" without triggered rows.
std::string evaluation_text(const Evaluation& e);

// ---- the verdict: did a defense remove the backdoor? ----------------------------------
// Removed when ASR <= max(5 %, floor + 3 points), the floor being a clean model's ASR on
// the same triggered rows (where it is known), and clean accuracy fell by at most 2
// points against the suspect. A suspect under 50 % ASR never learned the backdoor: a low
// ASR after the defense then says nothing about it, and the verdict is "unknown".
constexpr double kAsrTarget = 0.05, kAsrOverFloor = 0.03, kMaxCaccDrop = 0.02, kLearnedBackdoorAsr = 0.5;
// The highest ASR that counts as removed; `floor` < 0 when unknown.
double asr_limit(double floor);
bool backdoor_learned(double suspect_asr);
// A full repair, judged apart from the removal: the backdoor removed and the triggered
// rows back at their true labels about as often as clean rows are, RA within 10 points of
// CACC. A defense that only pushes triggered rows off the target (RA far below CACC)
// removed the backdoor without repairing the model.
constexpr double kMaxRaGap = 0.10;
struct Verdict {
  std::string verdict;  // success | fail | unknown
  bool asr_ok = false, cacc_ok = false, cacc_known = false;
  double limit = 0, cacc_drop = 0;
  std::string why;  // e.g. "ASR 1.2% ≤ 5.0%; CACC drop 0.4 points ≤ 2"
  std::string repair;      // repaired | not repaired | "" (not removed, or no RA measured)
  double ra_gap = 0;       // CACC − RA after the defense
  std::string repair_why;  // e.g. "RA 58.6% is 30.0 points under CACC 88.6% (> 10)"
};
// `suspect` null when the suspect's numbers are not known.
Verdict purification_verdict(const Evaluation& after, double floor, const Evaluation* suspect);
// The word a person reads: removed (success), failed (fail), unclear (unknown).
const char* verdict_word(const std::string& verdict);
// "removed (ASR 1.2% ≤ 5.0%; CACC drop 0.4 points ≤ 2); not repaired: RA 58.6% is ..."
std::string verdict_sentence(const Verdict& v);

}  // namespace antidote
