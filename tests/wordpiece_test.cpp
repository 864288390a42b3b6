// WordPiece: the basic split, greedy longest-match-first pieces, [CLS] ... [SEP]
// encoding, the vocab.txt reader, and the choice between WordPiece and antidote's word
// vocabulary. Every expected value is worked out by hand from BERT's tokenization rules
// (lower-case, canonical decomposition without combining marks, punctuation as words of
// their own); none comes from the code under test. tests/bert_roundtrip_test.sh compares
// the tokenizer with a Python one built on Python's own Unicode tables.
#include "antidote/data/wordpiece.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support.hpp"

using namespace antidote;
using antidote::testing::error_of;

namespace {

using Strings = std::vector<std::string>;
using Ids = std::vector<int64_t>;

// HuggingFace's layout: [PAD] 0, [unused0..98] 1..99, [UNK] 100, [CLS] 101, [SEP] 102,
// [MASK] 103, then the tokens given (ids from 104 on).
std::string hf_vocab(const Strings& tokens) {
  std::string s = "[PAD]\n";
  for (int i = 0; i < 99; ++i) s += "[unused" + std::to_string(i) + "]\n";
  s += "[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
  for (const auto& t : tokens) s += t + "\n";
  return s;
}

Ids row(const torch::Tensor& t, int64_t i) {
  auto r = t[i].contiguous();
  return Ids(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
}

}  // namespace

TEST(WordPiece, BasicSplitLowerCasesStripsAccentsAndSplitsPunctuation) {
  EXPECT_EQ(WordPiece::basic_tokens("Café"), (Strings{"cafe"}));
  EXPECT_EQ(WordPiece::basic_tokens("Hello, WORLD! It's"), (Strings{"hello", ",", "world", "!", "it", "'", "s"}));
  EXPECT_EQ(WordPiece::basic_tokens("  don't-stop...  "), (Strings{"don", "'", "t", "-", "stop", ".", ".", "."}));
  // ASCII symbols count as punctuation too.
  EXPECT_EQ(WordPiece::basic_tokens("$5+x^2"), (Strings{"$", "5", "+", "x", "^", "2"}));
  // Latin-1 and Latin Extended-A: decomposed letters lose their accents; letters with no
  // decomposition (Ł, Œ, ß, æ) are only lower-cased; İ lower-cases to i + a dot that goes.
  EXPECT_EQ(WordPiece::basic_tokens("NAÏVE Ångström Łódź ŒUVRE straße Æther İzmir Ÿ"),
            (Strings{"naive", "angstrom", "łodz", "œuvre", "straße", "æther", "izmir", "y"}));
  // A combining accent written after its letter is stripped as well.
  EXPECT_EQ(WordPiece::basic_tokens("e\u0301te\u0301"), (Strings{"ete"}));
  // Unicode punctuation: quotes, dashes, the ellipsis, inverted marks, guillemets.
  EXPECT_EQ(WordPiece::basic_tokens("\u201chi\u201d \u2014 \u00bfqu\u00e9?\u2026\u00ab"),
            (Strings{"\u201c", "hi", "\u201d", "\u2014", "\u00bf", "que", "?", "\u2026", "\u00ab"}));
  // × and ÷ are symbols, not letters: kept inside the word.
  EXPECT_EQ(WordPiece::basic_tokens("2\u00d73"), (Strings{"2\u00d73"}));
}

TEST(WordPiece, BasicSplitCleansWhitespaceControlsAndCjk) {
  // Tab, newline, no-break space, ideographic space and the line separator split words.
  EXPECT_EQ(WordPiece::basic_tokens("a\tb\nc\u00a0d\u3000e\u2028f"), (Strings{"a", "b", "c", "d", "e", "f"}));
  // Control and format characters vanish: BEL, soft hyphen, zero-width space, BOM.
  EXPECT_EQ(WordPiece::basic_tokens("be\x07ll co\u00adop ze\u200bro b\ufeffom"),
            (Strings{"bell", "coop", "zero", "bom"}));
  // Each CJK ideograph is a word of its own.
  EXPECT_EQ(WordPiece::basic_tokens("ab\u4e2d\u6587cd"), (Strings{"ab", "\u4e2d", "\u6587", "cd"}));
  // Bytes that are not UTF-8 read as U+FFFD, which is dropped.
  EXPECT_EQ(WordPiece::basic_tokens("ok\xffzy"), (Strings{"okzy"}));
  EXPECT_TRUE(WordPiece::basic_tokens(" \t\x01 ").empty());
  // A cased vocabulary keeps case and accents.
  EXPECT_EQ(WordPiece::basic_tokens("Café, Ok", /*lower_case=*/false), (Strings{"Café", ",", "Ok"}));
}

TEST(WordPiece, GreedyLongestMatchFirstWithContinuationPieces) {
  auto w = WordPiece::from_text(hf_vocab({"un", "##aff", "##able", "a", "##a"}), "vocab.txt");
  // un 104, ##aff 105, ##able 106, a 107, ##a 108.
  EXPECT_EQ(w.piece_ids("unaffable"), (Ids{104, 105, 106}));
  EXPECT_EQ(w.piece_ids("UnAffable, a"), (Ids{104, 105, 106, 100, 107}));  // "," is not in the vocabulary
  // No way to piece the word together: the whole word is one [UNK], not a partial match.
  EXPECT_EQ(w.piece_ids("unaffablex"), (Ids{100}));
  EXPECT_EQ(w.piece_ids("affable"), (Ids{100}));  // "aff" cannot start a word, only continue one
  // Longest first, not the best split: with ##affa present, "unaffable" takes it and
  // then needs ##ble.
  auto g = WordPiece::from_text(hf_vocab({"un", "##aff", "##affa", "##able", "##ble"}), "vocab.txt");
  EXPECT_EQ(g.piece_ids("unaffable"), (Ids{104, 106, 108}));
  auto h = WordPiece::from_text(hf_vocab({"un", "##aff", "##affa", "##able"}), "vocab.txt");
  EXPECT_EQ(h.piece_ids("unaffable"), (Ids{100}));  // after ##affa only "ble" is left, and no ##ble
}

TEST(WordPiece, WordsOverAHundredCharactersAreUnknown) {
  // ð has no decomposition and takes two bytes: the limit counts characters.
  auto w = WordPiece::from_text(hf_vocab({"\u00f0", "##\u00f0"}), "vocab.txt");  // 104, 105
  std::string hundred;
  for (int i = 0; i < 100; ++i) hundred += "\u00f0";
  auto ids = w.piece_ids(hundred);
  ASSERT_EQ(ids.size(), 100u);
  EXPECT_EQ(ids.front(), 104);
  EXPECT_EQ(ids.back(), 105);
  EXPECT_EQ(w.piece_ids(hundred + "\u00f0"), (Ids{100}));
}

TEST(WordPiece, EncodesClsPiecesSepAndPadsTruncatingBeforeSep) {
  auto w = WordPiece::from_text(hf_vocab({"the", "film", "is", "good"}), "vocab.txt");  // 104..107
  auto x = w.encode({"The film is good", "good", ""}, 5);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(row(x, 0), (Ids{101, 104, 105, 106, 102}));  // 4 pieces cut to 3, [SEP] kept last
  EXPECT_EQ(row(x, 1), (Ids{101, 107, 102, 0, 0}));
  EXPECT_EQ(row(x, 2), (Ids{101, 102, 0, 0, 0}));
  EXPECT_EQ(row(w.encode({"the film"}, 2), 0), (Ids{101, 102}));
  EXPECT_NE(error_of([&] { w.encode({"x"}, 1); }).find("max_len must be at least 2"), std::string::npos);
}

TEST(WordPiece, SpecialIdsComeFromTheFile) {
  auto hf = WordPiece::from_text(hf_vocab({"x", "##s"}), "vocab.txt");
  EXPECT_EQ(hf.pad_id(), 0);
  EXPECT_EQ(hf.unk_id(), 100);
  EXPECT_EQ(hf.cls_id(), 101);
  EXPECT_EQ(hf.sep_id(), 102);
  EXPECT_EQ(hf.size(), 106);
  // Anywhere in the file; an empty line keeps its id (ids are line numbers); CRLF is fine.
  auto w = WordPiece::from_text("good\r\n##s\r\n\r\n[SEP]\r\n[UNK]\r\n[PAD]\r\n[CLS]\r\n", "odd.txt");
  EXPECT_EQ(w.size(), 7);
  EXPECT_EQ(w.sep_id(), 3);
  EXPECT_EQ(w.unk_id(), 4);
  EXPECT_EQ(w.pad_id(), 5);
  EXPECT_EQ(w.cls_id(), 6);
  EXPECT_EQ(row(w.encode({"goods bad"}, 6), 0), (Ids{6, 0, 1, 4, 3, 5}));
  EXPECT_EQ(w.to_text(), "good\n##s\n\n[SEP]\n[UNK]\n[PAD]\n[CLS]\n");
  // A token on two lines keeps the last, as HuggingFace's loader does.
  auto d = WordPiece::from_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nok\n##s\nok\n", "dup.txt");
  EXPECT_EQ(d.piece_ids("ok"), (Ids{6}));
}

TEST(WordPiece, CasedVocabularyKeepsCase) {
  auto w = WordPiece::from_text(hf_vocab({"Caf", "##é", "caf", "##e"}), "cased.txt");  // 104..107
  EXPECT_FALSE(w.lower_case());
  EXPECT_EQ(w.piece_ids("Café"), (Ids{104, 105}));
  auto u = WordPiece::from_text(hf_vocab({"caf", "##e", "##é"}), "uncased.txt");  // [..] specials do not count
  EXPECT_TRUE(u.lower_case());
  EXPECT_EQ(u.piece_ids("Café"), (Ids{104, 105}));
}

TEST(WordPiece, MalformedVocabulariesNameTheFileAndLine) {
  auto msg = error_of([] { WordPiece::from_text("[PAD]\n[UNK]\n[CLS]\n##s\n", "nosep.txt"); });
  EXPECT_NE(msg.find("'nosep.txt' has no [SEP] line"), std::string::npos) << msg;
  msg = error_of([] { WordPiece::from_text("[SEP]\n[UNK]\n[CLS]\n##s\n", "nopad.txt"); });
  EXPECT_NE(msg.find("'nopad.txt' has no [PAD] line"), std::string::npos) << msg;
  msg = error_of([] { WordPiece::from_text("[PAD]\n[UNK]\nb\xe9t\n[CLS]\n[SEP]\n", "latin1.txt"); });
  EXPECT_NE(msg.find("'latin1.txt' line 3: byte 2 is not valid UTF-8"), std::string::npos) << msg;
  msg = error_of([] { WordPiece::from_text("", "empty.txt"); });
  EXPECT_NE(msg.find("'empty.txt' has no [PAD] line"), std::string::npos) << msg;
  std::string huge = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n";
  for (int64_t i = 4; i <= kMaxVocabLines; ++i) huge += "t\n";
  msg = error_of([&] { WordPiece::from_text(huge, "huge.txt"); });
  EXPECT_NE(msg.find(fmt::format("'huge.txt' line {}: more than {} tokens", kMaxVocabLines + 1, kMaxVocabLines)),
            std::string::npos)
      << msg;
}

TEST(WordPiece, VocabularyFilesPickTheirTokenizer) {
  const std::string words = "[PAD]\n[UNK]\n[CLS]\nthe\nfilm\n";
  EXPECT_FALSE(WordPiece::recognises(words));
  EXPECT_TRUE(WordPiece::recognises(hf_vocab({"the", "##s"})));
  EXPECT_FALSE(WordPiece::recognises(hf_vocab({"the", "films"})));  // no ## pieces
  auto v = parse_tokenizer(words, "words.vocab");
  ASSERT_NE(dynamic_cast<const Vocab*>(v.get()), nullptr);
  EXPECT_EQ(v->size(), 5);
  EXPECT_EQ(v->pad_id(), 0);
  EXPECT_EQ(v->to_text(), words);
  auto w = parse_tokenizer(hf_vocab({"the", "##s"}), "vocab.txt");
  ASSERT_NE(dynamic_cast<const WordPiece*>(w.get()), nullptr);
  EXPECT_EQ(row(w->encode({"the"}, 4), 0), (Ids{101, 104, 102, 0}));
  // Neither kind: the message says what each needs.
  auto msg = error_of([] { parse_tokenizer("[UNK]\n[PAD]\n[CLS]\n[SEP]\n", "mixed.vocab"); });
  EXPECT_NE(msg.find("'mixed.vocab' must start with [PAD], [UNK], [CLS]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("WordPiece"), std::string::npos) << msg;
  msg = error_of([] { read_tokenizer("/nonexistent/model.pt.vocab"); });
  EXPECT_NE(msg.find("'/nonexistent/model.pt.vocab' not found"), std::string::npos) << msg;
}

TEST(WordPiece, PaddingIdIsSwappedWithZeroAndBack) {
  auto ids = torch::tensor({{6, 0, 1, 5, 5}}, torch::kLong);
  auto swapped = swap_token_ids(ids, 5);
  EXPECT_EQ(row(swapped, 0), (Ids{6, 5, 1, 0, 0}));
  EXPECT_EQ(row(swap_token_ids(swapped, 5), 0), (Ids{6, 0, 1, 5, 5}));
  EXPECT_TRUE(swap_token_ids(ids, 0).is_same(ids));  // antidote's own vocabularies: untouched
}
