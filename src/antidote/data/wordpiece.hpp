// WordPiece, the tokenizer of BERT-style models, so that a model trained in Python
// with a HuggingFace-style vocab.txt sees the same token ids in antidote as it saw in
// training: the basic split (control characters removed, whitespace split, lower-case,
// accents stripped, punctuation and CJK characters split off), then greedy
// longest-match-first pieces with "##" continuations, encoded as [CLS] pieces [SEP].
//
// Unicode coverage is compact, with no Unicode tables: lower-casing and accent
// stripping cover ASCII, Latin-1 Supplement and Latin Extended-A (plus combining marks
// written separately); letters of other scripts are kept as they are. Punctuation is
// ASCII's and that of the Latin-1, General Punctuation, Supplemental Punctuation, CJK
// and fullwidth blocks.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "antidote/data/data.hpp"

namespace antidote {

// Bounds on a vocabulary file: multilingual BERT's holds 119 547 lines, 1 MB.
constexpr uint64_t kMaxVocabBytes = uint64_t(64) << 20;
constexpr int64_t kMaxVocabLines = 1000000;

class WordPiece : public Tokenizer {
 public:
  // Longer words (in characters) become one [UNK], as in BERT's tokenizer.
  static constexpr int64_t kMaxWordChars = 100;

  // A vocab.txt: one token per line, the line number (from 0) is the token's id. It
  // must hold [PAD], [UNK], [CLS] and [SEP], wherever they are. A token that appears
  // twice keeps its last line, as HuggingFace's loader does. Errors name `origin` and
  // the line.
  static WordPiece from_text(const std::string& text, const std::string& origin);
  // Whether a vocabulary file is WordPiece's: it has [CLS], [SEP] and "##" pieces.
  static bool recognises(const std::string& text);

  // The basic split of one sentence, lower-cased and accents stripped when `lower_case`.
  static std::vector<std::string> basic_tokens(const std::string& text, bool lower_case = true);
  // The ids of a sentence's pieces, without [CLS] and [SEP].
  std::vector<int64_t> piece_ids(const std::string& text) const;
  // [N, max_len]: [CLS], the pieces (truncated so that [SEP] stays), [SEP], then [PAD].
  torch::Tensor encode(const std::vector<std::string>& texts, int64_t max_len) const override;

  int64_t pad_id() const override { return pad_; }
  int64_t unk_id() const { return unk_; }
  int64_t cls_id() const { return cls_; }
  int64_t sep_id() const { return sep_; }
  int64_t size() const override { return static_cast<int64_t>(tokens_.size()); }
  // False for a cased vocabulary (tokens with capital letters besides the [..]
  // specials): its text is neither lower-cased nor stripped of accents.
  bool lower_case() const { return lower_case_; }
  std::string to_text() const override;

 private:
  void append_word_ids(const std::string& word, std::vector<int64_t>& out) const;

  std::vector<std::string> tokens_;  // every line, so that ids keep their line numbers
  std::unordered_map<std::string, int64_t> index_;
  int64_t pad_ = 0, unk_ = 0, cls_ = 0, sep_ = 0;
  bool lower_case_ = true;
};

// The tokenizer a vocabulary file describes: WordPiece when WordPiece::recognises it,
// else antidote's word vocabulary (Vocab::from_text). `origin` names it in errors.
std::shared_ptr<const Tokenizer> parse_tokenizer(const std::string& text, const std::string& origin);
// The same from a file (at most kMaxVocabBytes).
std::shared_ptr<const Tokenizer> read_tokenizer(const std::string& path);

}  // namespace antidote
