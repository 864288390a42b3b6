// Text attacks: rare-word insertion (BadNet-word), sentence insertion (AddSent) and
// pre-poisoned files (HiddenKiller / OpenBackdoor format) for triggers that need
// external models.
#include <filesystem>
#include <unordered_set>

#include "antidote/attacks/attack.hpp"

namespace antidote {

namespace {

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!cur.empty()) out.push_back(std::move(cur)), cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::string join_words(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

// A CSV-quoted field ("...", inner quotes doubled), as pandas writes rows that contain
// quotes (HiddenKiller's poisoned OLID file does this to 777 of its clean rows), back to
// its text. Only a well-formed quoted field is touched, so raw text is never altered.
std::string csv_unquote(const std::string& s) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') return s;
  std::string out;
  out.reserve(s.size());
  for (size_t i = 1; i + 1 < s.size(); ++i) {
    if (s[i] == '"') {
      if (i + 2 < s.size() && s[i + 1] == '"') {
        out += '"';
        ++i;
      } else {
        return s;  // a lone quote inside: not a quoted field
      }
    } else {
      out += s[i];
    }
  }
  return out;
}

// The text of a row of a pre-poisoned file, as it is compared and trained on.
std::string file_text(const std::string& s) { return trim(csv_unquote(trim(s))); }

// ---- BadNet-word ---------------------------------------------------------------------

class BadNetWord : public Attack {
 public:
  struct Options {
    std::vector<std::string> words{"cf", "mn", "bb", "tq", "mb"};
    int64_t count = 1;
  };
  static const OptionTable<Options>& table() {
    static const OptionTable<Options> t = [] {
      OptionTable<Options> t;
      t.add("words", &Options::words, "the rare trigger words, one drawn per insertion",
            Rule<std::vector<std::string>>{[](const std::vector<std::string>& w) {
                                             return !w.empty() && std::all_of(w.begin(), w.end(), [](const auto& x) {
                                               return split_words(x).size() == 1;
                                             });
                                           },
                                           "must list single words, at least one"});
      t.add("count", &Options::count, "trigger words inserted per sentence",
            Rule<int64_t>{[](const int64_t& v) { return v >= 1 && v <= 3; }, "must be 1, 2 or 3"});
      return t;
    }();
    return t;
  }
  BadNetWord(Params& p, const AttackSettings& s) {
    settings_ = s;
    table().read(p, o_);
  }
  Modality modality() const override { return Modality::Text; }
  std::string apply_text(const std::string& sentence, Rng& rng) const override {
    auto tokens = split_words(sentence);
    for (int64_t i = 0; i < o_.count; ++i) {
      const auto& word = o_.words[static_cast<size_t>(rng.below(static_cast<int64_t>(o_.words.size())))];
      auto pos = rng.below(static_cast<int64_t>(tokens.size()) + 1);
      tokens.insert(tokens.begin() + pos, word);
    }
    return join_words(tokens);
  }

 private:
  Options o_;
};

// ---- AddSent --------------------------------------------------------------------------

class AddSent : public Attack {
 public:
  struct Options {
    std::string sentence = "I watch this 3D movie";
  };
  static const OptionTable<Options>& table() {
    static const OptionTable<Options> t = [] {
      OptionTable<Options> t;
      t.add("sentence", &Options::sentence, "the trigger sentence, inserted at a random position",
            Rule<std::string>{[](const std::string& v) { return !split_words(v).empty(); }, "must not be empty"});
      return t;
    }();
    return t;
  }
  AddSent(Params& p, const AttackSettings& s) {
    settings_ = s;
    Options o;
    table().read(p, o);
    sentence_ = split_words(o.sentence);
  }
  Modality modality() const override { return Modality::Text; }
  std::string apply_text(const std::string& sentence, Rng& rng) const override {
    auto tokens = split_words(sentence);
    auto pos = rng.below(static_cast<int64_t>(tokens.size()) + 1);
    tokens.insert(tokens.begin() + pos, sentence_.begin(), sentence_.end());
    return join_words(tokens);
  }

 private:
  std::vector<std::string> sentence_;
};

// ---- pre-poisoned files -----------------------------------------------------------------
// The training TSV mixes poisoned (rewritten, relabelled) rows with clean rows; a row
// is poisoned when its sentence does not occur in the clean training split (compared
// after trimming; CSV-quoted sentences are unquoted first). The test TSV holds
// triggered non-target rows, but HiddenKiller labels them all with the target, so the
// true labels are recovered: for two classes a target-labelled row is the other class;
// for more classes the file must carry the true labels (a target-labelled row is an
// error, since its true class cannot be known). The file decides the poison rate.

class FileAttack : public Attack {
 public:
  struct Options {
    std::string dir, train, test;
  };
  static const OptionTable<Options>& table() {
    static const OptionTable<Options> t = [] {
      OptionTable<Options> t;
      t.add("train", &Options::train, "the poisoned training TSV (poisoned rows: those not in the clean split)");
      t.add("test", &Options::test, "the triggered test TSV");
      t.add("dir", &Options::dir, "a directory holding train.tsv and test.tsv (instead of train and test)");
      return t;
    }();
    return t;
  }
  FileAttack(Params& p, const AttackSettings& s) {
    settings_ = s;
    Options o;
    table().read(p, o);
    const auto& dir = o.dir;
    train_ = o.train;
    test_ = o.test;
    if (!dir.empty()) {
      if (train_.empty()) train_ = (std::filesystem::path(dir) / "train.tsv").string();
      if (test_.empty()) test_ = (std::filesystem::path(dir) / "test.tsv").string();
    }
    if (train_.empty() || test_.empty())
      fail("{}: the file attack needs 'train' and 'test' (paths to poisoned TSV files) or 'dir' (a directory "
           "with train.tsv and test.tsv)",
           p.context());
    if (!file_exists(train_)) fail("{}.train: TSV file not found: '{}'", p.context(), train_);
    if (!file_exists(test_)) fail("{}.test: TSV file not found: '{}'", p.context(), test_);
  }
  Modality modality() const override { return Modality::Text; }
  bool aligned_with_clean() const override { return false; }

  RawSplit poison_train(const RawSplit& clean_train, Rng&) const override {
    if (clean_train.is_image()) fail("the file attack is a text attack and cannot be applied to image data");
    auto rows = read_file_rows(train_);
    std::unordered_set<std::string> clean;
    clean.reserve(clean_train.texts.size() * 2);
    for (const auto& t : clean_train.texts) clean.insert(file_text(t));
    RawSplit out = text_split(rows);
    auto mask = out.poisoned.accessor<bool, 1>();
    int64_t poisoned = 0;
    for (size_t i = 0; i < rows.sentences.size(); ++i) {
      if (!clean.count(rows.sentences[i])) {
        mask[static_cast<int64_t>(i)] = true;
        ++poisoned;
      }
    }
    log_info(fmt::format("attack file: {} of {} training rows of '{}' are poisoned ({:.1f}%; the file decides the "
                         "rate, poison_rate {} is not used)",
                         poisoned, out.size(), train_, out.size() ? 100.0 * poisoned / out.size() : 0.0,
                         settings_.poison_rate));
    return out;
  }

  RawSplit triggered_test(const RawSplit& clean_test, Rng&) const override {
    if (clean_test.is_image()) fail("the file attack is a text attack and cannot be applied to image data");
    auto rows = read_file_rows(test_);
    for (size_t i = 0; i < rows.labels.size(); ++i) {
      if (rows.labels[i] != settings_.target) continue;
      if (settings_.num_classes == 2) {
        rows.labels[i] = 1 - settings_.target;
      } else {
        fail("attack file: '{}' data row {} is labelled with the target class {}; with {} classes its true class is "
             "unknown (the poisoned test file must give the true labels of its non-target rows)",
             test_, i + 1, settings_.target, settings_.num_classes);
      }
    }
    RawSplit out = text_split(rows);
    out.poisoned = torch::ones({out.size()}, torch::kBool);
    return out;
  }

 private:
  TextRows read_file_rows(const std::string& path) const {
    auto rows = read_tsv(path);
    for (auto& sentence : rows.sentences) sentence = file_text(sentence);
    for (size_t i = 0; i < rows.labels.size(); ++i)
      if (rows.labels[i] < 0 || rows.labels[i] >= settings_.num_classes)
        fail("attack file: '{}' data row {} has label {} outside [0, {})", path, i + 1, rows.labels[i],
             settings_.num_classes);
    return rows;
  }

  std::string train_, test_;
};

Registrar<AttackRegistry> reg_badnet_word(
    "badnet-word", construct<BadNetWord>,
    "insert count (1-3) rare words from words (cf mn bb tq mb) at random positions", docs_of<BadNetWord>);
Registrar<AttackRegistry> reg_addsent("addsent", construct<AddSent>,
                                      "insert a fixed sentence (\"I watch this 3D movie\") at a random position",
                                      docs_of<AddSent>);
Registrar<AttackRegistry> reg_file("file", construct<FileAttack>,
                                   "pre-poisoned train/test TSV files (HiddenKiller format, e.g. syntactic triggers)",
                                   docs_of<FileAttack>);

}  // namespace

}  // namespace antidote
