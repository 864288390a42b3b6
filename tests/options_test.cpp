// The option table: reading, following, checking, listing and recording keys; and the
// defenses' tables as `antidote list --options` and results.json see them.
#include "antidote/core/options.hpp"

#include <gtest/gtest.h>

#include "antidote/defenses/defense.hpp"

namespace antidote {
namespace {

struct Inner {
  double rate = 0.5;
};
struct Knobs {
  int64_t count = 3;
  double weight = -1;  // -1: as `rate`
  std::string mode = "fast";
  bool verbose = false;
  Inner inner;
};

const OptionTable<Knobs>& knobs() {
  static const OptionTable<Knobs> t = [] {
    OptionTable<Knobs> t;
    t.add("count", &Knobs::count, "how many", positive<int64_t>());
    t.add("rate", nested(&Knobs::inner, &Inner::rate), "how fast", within(0, 1));
    t.add("weight", &Knobs::weight, "how heavy", at_least(0.0))
        .follows<double>(
            -1, [](const Knobs& k) { return k.inner.rate; }, "rate");
    t.add("mode", &Knobs::mode, "which way", one_of({"fast", "slow", "steady"})).group("way");
    t.add("verbose", &Knobs::verbose, "say more");
    return t;
  }();
  return t;
}

Knobs read(const std::string& yaml) {
  Params p(YAML::Load(yaml), "knobs");
  Knobs k;
  knobs().read(p, k);
  p.check_consumed();
  return k;
}

std::string error_of(const std::string& yaml) {
  try {
    read(yaml);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Options, AbsentKeysKeepTheStructsDefaultsAndGivenOnesOverride) {
  auto k = read("{}");
  EXPECT_EQ(k.count, 3);
  EXPECT_EQ(k.mode, "fast");
  EXPECT_DOUBLE_EQ(k.weight, 0.5);  // followed `rate`
  k = read("{count: 7, rate: 0.25, mode: slow, verbose: true}");
  EXPECT_EQ(k.count, 7);
  EXPECT_DOUBLE_EQ(k.inner.rate, 0.25);
  EXPECT_DOUBLE_EQ(k.weight, 0.25);  // follows the resolved rate, not the default
  EXPECT_EQ(k.mode, "slow");
  EXPECT_TRUE(k.verbose);
  EXPECT_DOUBLE_EQ(read("{rate: 0.25, weight: 2}").weight, 2.0);
}

TEST(Options, ABrokenRuleNamesTheKeyTheRuleAndTheValue) {
  EXPECT_EQ(error_of("{count: 0}"), "knobs: count must be positive, got 0");
  EXPECT_EQ(error_of("{rate: 1.5}"), "knobs: rate must lie in [0, 1], got 1.5");
  EXPECT_EQ(error_of("{mode: quick}"), "knobs: mode must be fast, slow or steady, got quick");
  EXPECT_EQ(error_of("{weight: -1}"), "knobs: weight must be >= 0, got -1");  // given: not followed
  EXPECT_NE(error_of("{count: many}").find("cannot read"), std::string::npos);
  EXPECT_NE(error_of("{colour: red}").find("unknown key 'colour'"), std::string::npos);
}

TEST(Options, GroupsValuesAndPrefixes) {
  Params p(YAML::Load("{mode: slow, count: 2}"), "knobs");
  EXPECT_EQ(knobs().given(p, "way"), std::vector<std::string>{"mode"});
  Knobs k;
  knobs().read(p, k);
  auto v = knobs().values(k);
  EXPECT_EQ(v["count"], 2);
  EXPECT_EQ(v["mode"], "slow");
  EXPECT_DOUBLE_EQ(v["weight"].get<double>(), 0.5);
  EXPECT_EQ(v.size(), 5u);
  Params q(YAML::Load("{ft_count: 9}"), "knobs");
  Knobs kq;
  knobs().read(q, kq, "ft_");
  EXPECT_EQ(kq.count, 9);
  EXPECT_NO_THROW(q.check_consumed());
}

TEST(Options, DocsShowEachProfilesDefaultOnceWhenTheyAgree) {
  Knobs a, b;
  b.count = 5;
  auto docs = knobs().docs({{"image", a}, {"text", b}});
  ASSERT_EQ(docs.size(), 5u);
  EXPECT_EQ(docs[0].key, "count");
  EXPECT_EQ(docs[0].value, "image 3, text 5");
  EXPECT_EQ(docs[0].rule, "must be positive");
  EXPECT_EQ(docs[3].value, "fast");
  EXPECT_EQ(docs[2].meaning, "how heavy (unset: rate)");
  EXPECT_EQ(docs[4].type, "true or false");
  auto text = format_option_docs("knobs", docs);
  EXPECT_NE(text.find("knobs:\n  count "), std::string::npos);
  EXPECT_NE(text.find("which way; must be fast, slow or steady"), std::string::npos);
}

// Every registered defense with options lists them; each listed key is one the
// defense accepts, and its resolved values name exactly the listed keys.
TEST(Options, EveryDefenseListsTheKeysItReadsAndRecords) {
  for (const auto& [name, entry] : DefenseRegistry::instance().entries()) {
    if (!entry.options) continue;
    auto docs = entry.options();
    YAML::Node none(YAML::NodeType::Map);
    Params p(none, name);
    auto defense = make_defense(name, p, DefenseSetup{Modality::Image, "cnn", 10});
    auto resolved = defense->resolved_options();
    for (const auto& d : docs) {
      EXPECT_FALSE(d.meaning.empty()) << name << "." << d.key;
      EXPECT_TRUE(resolved.contains(d.key)) << name << "." << d.key;
    }
    EXPECT_EQ(resolved.size(), docs.size()) << name;
  }
}

TEST(Options, ADefensesResolvedValuesFollowTheConfigAndTheModality) {
  YAML::Node o;
  o["lr"] = 0.05;
  Params p(o, "ft");
  auto ft = make_defense("ft", p, DefenseSetup{Modality::Image, "cnn", 10});
  EXPECT_DOUBLE_EQ(ft->resolved_options()["lr"].get<double>(), 0.05);
  EXPECT_EQ(ft->resolved_options()["optimizer"], "sgd");
  Params none(YAML::Node(YAML::NodeType::Map), "ft");
  auto text = make_defense("ft", none, DefenseSetup{Modality::Text, "transformer", 2});
  EXPECT_EQ(text->resolved_options()["optimizer"], "adam");
  EXPECT_EQ(text->resolved_options()["epochs"], 10);
  // NT-ML's teacher rate follows the student's: ml_lr / 10.
  Params n(YAML::Load("{ml_lr: 0.02}"), "ntml");
  auto ntml = make_defense("ntml", n, DefenseSetup{Modality::Image, "cnn", 10});
  EXPECT_DOUBLE_EQ(ntml->resolved_options()["ml_teacher_lr"].get<double>(), 0.1 * 0.02);
}

// The mapping's keys are refused when another method finds the punish set; the keys
// both stages read are not.
TEST(Options, BedkdRefusesTheMappingsKeysUnderAnotherIdentification) {
  DefenseSetup text{Modality::Text, "transformer", 2};
  Params ok(YAML::Load("{identify: token_stats, reshuffle: true, akd_epochs: 3}"), "bedkd");
  EXPECT_NO_THROW(make_defense("bedkd", ok, text));
  Params bad(YAML::Load("{identify: token_stats, flip_epochs: 3}"), "bedkd");
  try {
    make_defense("bedkd", bad, text);
    FAIL() << "flip_epochs accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "bedkd: 'flip_epochs' belongs to identify: dmm, and identify is 'token_stats'");
  }
}

}  // namespace
}  // namespace antidote
