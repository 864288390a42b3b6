#include "antidote/data/wordpiece.hpp"

#include <algorithm>
#include <iterator>

namespace antidote {

namespace {

// ---- UTF-8 ------------------------------------------------------------------------

// The code points of `s`. A byte that does not start a well-formed sequence reads as
// U+FFFD, which the basic split drops (BERT's tokenizer drops U+FFFD too).
std::vector<char32_t> decode_utf8(const std::string& s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = p[i];
    size_t len = c < 0x80                 ? 1
                 : c >= 0xc2 && c <= 0xdf ? 2
                 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4
                                          : 0;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xc0) == 0x80;
    if (!ok) {
      out.push_back(0xfffd);
      ++i;
      continue;
    }
    char32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (p[i + k] & 0x3f);
    out.push_back(cp);
    i += len;
  }
  return out;
}

void append_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// ---- character classes ------------------------------------------------------------

struct Range {
  char32_t lo, hi;
};

bool in_ranges(char32_t cp, const Range* begin, const Range* end) {
  return std::any_of(begin, end, [cp](const Range& r) { return cp >= r.lo && cp <= r.hi; });
}

// Unicode's space separators (category Zs) and the line and paragraph separators,
// which Python's str.split() (and so BERT's tokenizer) splits on as well.
bool is_whitespace(char32_t cp) {
  static constexpr Range kSpaces[] = {{0x20, 0x20},     {0x09, 0x0a},     {0x0d, 0x0d},     {0xa0, 0xa0},
                                      {0x1680, 0x1680}, {0x2000, 0x200a}, {0x2028, 0x2029}, {0x202f, 0x202f},
                                      {0x205f, 0x205f}, {0x3000, 0x3000}};
  return in_ranges(cp, std::begin(kSpaces), std::end(kSpaces));
}

// Control and format characters (Unicode's C categories), which BERT's tokenizer
// removes; tab, newline and carriage return are whitespace instead. Unassigned code
// points, also removed there, are kept here (no Unicode tables).
bool is_control(char32_t cp) {
  if (cp == 0x09 || cp == 0x0a || cp == 0x0d) return false;
  static constexpr Range kControls[] = {
      {0x00, 0x1f},     {0x7f, 0x9f},     {0xad, 0xad},     {0x600, 0x605},     {0x61c, 0x61c},     {0x6dd, 0x6dd},
      {0x70f, 0x70f},   {0x180e, 0x180e}, {0x200b, 0x200f}, {0x202a, 0x202e},   {0x2060, 0x2064},   {0x2066, 0x206f},
      {0xd800, 0xf8ff}, {0xfeff, 0xfeff}, {0xfff9, 0xfffb}, {0xe0001, 0xe007f}, {0xf0000, 0x10ffff}};
  return in_ranges(cp, std::begin(kControls), std::end(kControls));
}

// ASCII's non-alphanumeric printable characters (BERT counts $, +, <, ^, ` and the
// like as punctuation too), and Unicode's punctuation (categories P*) in the blocks
// where running text meets it.
bool is_punctuation(char32_t cp) {
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126))
    return true;
  static constexpr Range kPunctuation[] = {
      {0xa1, 0xa1},     {0xa7, 0xa7},     {0xab, 0xab},     {0xb6, 0xb7},     {0xbb, 0xbb},     {0xbf, 0xbf},
      {0x37e, 0x37e},   {0x387, 0x387},   {0x2010, 0x2027}, {0x2030, 0x2043}, {0x2045, 0x2051}, {0x2053, 0x205e},
      {0x2e00, 0x2e2e}, {0x2e30, 0x2e4f}, {0x2e52, 0x2e5d}, {0x3001, 0x3003}, {0x3008, 0x3011}, {0x3014, 0x301f},
      {0x3030, 0x3030}, {0x303d, 0x303d}, {0xff01, 0xff03}, {0xff05, 0xff0a}, {0xff0c, 0xff0f}, {0xff1a, 0xff1b},
      {0xff1f, 0xff20}, {0xff3b, 0xff3d}, {0xff3f, 0xff3f}, {0xff5b, 0xff5b}, {0xff5d, 0xff5d}, {0xff5f, 0xff65}};
  return in_ranges(cp, std::begin(kPunctuation), std::end(kPunctuation));
}

// CJK ideographs: BERT's tokenizer makes each one a word of its own.
bool is_cjk(char32_t cp) {
  static constexpr Range kCjk[] = {{0x4e00, 0x9fff},   {0x3400, 0x4dbf},   {0x20000, 0x2a6df}, {0x2a700, 0x2b73f},
                                   {0x2b740, 0x2b81f}, {0x2b820, 0x2ceaf}, {0xf900, 0xfaff},   {0x2f800, 0x2fa1f}};
  return in_ranges(cp, std::begin(kCjk), std::end(kCjk));
}

// U+00C0..U+017F lower-cased and stripped of accents (Unicode's canonical
// decomposition without its combining marks): the base letter, or '.' for a letter
// that has no decomposition (æ, ø, ß, ł, œ, ...), which is only lower-cased.
constexpr char kLatinBase[] =
    "aaaaaa.ceeeeiiii.nooooo..uuuuy..aaaaaa.ceeeeiiii.nooooo..uuuuy.y"   // U+00C0..U+00FF
    "aaaaaaccccccccdd..eeeeeeeeeegggggggghh..iiiiiiiii...jjkk.llllll."   // U+0100..U+013F
    "...nnnnnn...oooooo..rrrrrrsssssssstttt..uuuuuuuuuuuuwwyyyzzzzzz.";  // U+0140..U+017F

// The lower case of a letter without a decomposition (the '.' entries above).
char32_t lower_undecomposed(char32_t cp) {
  // Æ Ð Ø Þ: the lower case is 0x20 above, as for the decomposed letters of Latin-1.
  if (cp >= 0xc0 && cp <= 0xde && cp != 0xd7) return cp + 0x20;
  // Đ Ħ Ĳ Ŀ Ł Ŋ Œ Ŧ: each capital is followed by its small letter.
  static constexpr char32_t kCapitals[] = {0x110, 0x126, 0x132, 0x13f, 0x141, 0x14a, 0x152, 0x166};
  return std::find(std::begin(kCapitals), std::end(kCapitals), cp) != std::end(kCapitals) ? cp + 1 : cp;
}

// Appends `cp` lower-cased and without its accents (uncased BERT's normalisation).
void append_folded(char32_t cp, std::string& out) {
  if (cp >= 'A' && cp <= 'Z') {
    out += static_cast<char>(cp + ('a' - 'A'));
  } else if (cp >= 0x300 && cp <= 0x36f) {
    // A combining accent written on its own: stripped.
  } else if (cp >= 0xc0 && cp <= 0x17f) {
    const char base = kLatinBase[cp - 0xc0];
    if (base != '.') {
      out += base;
    } else {
      append_utf8(lower_undecomposed(cp), out);
    }
  } else {
    append_utf8(cp, out);
  }
}

}  // namespace

// ---- the basic split ----------------------------------------------------------------

std::vector<std::string> WordPiece::basic_tokens(const std::string& text, bool lower_case) {
  std::vector<std::string> out;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) out.push_back(std::move(word));
    word.clear();
  };
  for (const char32_t cp : decode_utf8(text)) {
    if (cp == 0 || cp == 0xfffd || is_control(cp)) continue;
    if (is_whitespace(cp)) {
      flush();
    } else if (is_punctuation(cp) || is_cjk(cp)) {
      flush();
      append_utf8(cp, word);
      flush();
    } else if (lower_case) {
      append_folded(cp, word);
    } else {
      append_utf8(cp, word);
    }
  }
  flush();
  return out;
}

// ---- pieces -------------------------------------------------------------------------

void WordPiece::append_word_ids(const std::string& word, std::vector<int64_t>& out) const {
  // Byte offsets of the word's characters: pieces never split a character.
  std::vector<size_t> starts;
  for (size_t i = 0; i < word.size(); ++i)
    if ((static_cast<unsigned char>(word[i]) & 0xc0) != 0x80) starts.push_back(i);
  const size_t chars = starts.size();
  if (static_cast<int64_t>(chars) > kMaxWordChars) {
    out.push_back(unk_);
    return;
  }
  starts.push_back(word.size());
  std::vector<int64_t> pieces;
  for (size_t begin = 0; begin < chars;) {
    // The longest piece from `begin` that the vocabulary holds.
    int64_t found = -1;
    size_t end = chars;
    for (; end > begin; --end) {
      auto piece = word.substr(starts[begin], starts[end] - starts[begin]);
      if (begin > 0) piece.insert(0, "##");
      if (auto it = index_.find(piece); it != index_.end()) {
        found = it->second;
        break;
      }
    }
    if (found < 0) {  // a word that cannot be pieced together is one [UNK]
      out.push_back(unk_);
      return;
    }
    pieces.push_back(found);
    begin = end;
  }
  out.insert(out.end(), pieces.begin(), pieces.end());
}

std::vector<int64_t> WordPiece::piece_ids(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const auto& word : basic_tokens(text, lower_case_)) append_word_ids(word, ids);
  return ids;
}

torch::Tensor WordPiece::encode(const std::vector<std::string>& texts, int64_t max_len) const {
  if (max_len < 2) fail("max_len must be at least 2 ([CLS] and [SEP]), got {}", max_len);
  auto out = torch::full({static_cast<int64_t>(texts.size()), max_len}, pad_, torch::kLong);
  auto acc = out.accessor<int64_t, 2>();
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto ids = piece_ids(texts[i]);
    const int64_t kept = std::min<int64_t>(static_cast<int64_t>(ids.size()), max_len - 2);
    acc[i][0] = cls_;
    for (int64_t j = 0; j < kept; ++j) acc[i][j + 1] = ids[static_cast<size_t>(j)];
    acc[i][kept + 1] = sep_;
  }
  return out;
}

// ---- the vocabulary file ------------------------------------------------------------

namespace {

// Calls `line(text, number)` for every line of `text` (from 1; "\n" or "\r\n" ends a
// line; a final newline starts no empty line) until it returns false.
template <class F>
void for_each_line(const std::string& text, F line) {
  int64_t number = 0;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    size_t stop = end > start && text[end - 1] == '\r' ? end - 1 : end;
    if (!line(text.substr(start, stop - start), ++number)) return;
    start = end + 1;
  }
}

// A capital letter outside the bracketed special tokens marks a cased vocabulary.
bool has_capitals(const std::string& token) {
  if (token.size() >= 2 && token.front() == '[' && token.back() == ']') return false;
  return std::any_of(token.begin(), token.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

}  // namespace

WordPiece WordPiece::from_text(const std::string& text, const std::string& origin) {
  if (text.size() > kMaxVocabBytes)
    fail("vocabulary '{}': {} bytes, more than the {} antidote reads", origin, text.size(), kMaxVocabBytes);
  WordPiece w;
  bool cased = false;
  for_each_line(text, [&](std::string token, int64_t number) {
    if (number > kMaxVocabLines) fail("vocabulary '{}' line {}: more than {} tokens", origin, number, kMaxVocabLines);
    if (const size_t bad = invalid_utf8_at(token); bad != std::string::npos)
      fail("vocabulary '{}' line {}: byte {} is not valid UTF-8 (0x{:02x})", origin, number, bad + 1,
           static_cast<unsigned char>(token[bad]));
    // An empty line keeps its id (the ids are line numbers) but matches nothing.
    if (!token.empty()) w.index_[token] = number - 1;
    cased = cased || has_capitals(token);
    w.tokens_.push_back(std::move(token));
    return true;
  });
  auto special = [&](const char* token) {
    auto it = w.index_.find(token);
    if (it == w.index_.end())
      fail(
          "vocabulary '{}' has no {} line (a WordPiece vocab.txt holds [PAD], [UNK], [CLS] and [SEP], one token per "
          "line)",
          origin, token);
    return it->second;
  };
  w.pad_ = special("[PAD]");
  w.unk_ = special("[UNK]");
  w.cls_ = special("[CLS]");
  w.sep_ = special("[SEP]");
  w.lower_case_ = !cased;
  return w;
}

bool WordPiece::recognises(const std::string& text) {
  bool cls = false, sep = false, pieces = false;
  for_each_line(text, [&](const std::string& token, int64_t) {
    cls = cls || token == "[CLS]";
    sep = sep || token == "[SEP]";
    pieces = pieces || (token.size() > 2 && token.compare(0, 2, "##") == 0);
    return !(cls && sep && pieces);
  });
  return cls && sep && pieces;
}

std::string WordPiece::to_text() const {
  std::string s;
  for (const auto& t : tokens_) s += t + "\n";
  return s;
}

std::shared_ptr<const Tokenizer> parse_tokenizer(const std::string& text, const std::string& origin) {
  if (WordPiece::recognises(text)) return std::make_shared<WordPiece>(WordPiece::from_text(text, origin));
  return std::make_shared<Vocab>(Vocab::from_text(text, origin));
}

std::shared_ptr<const Tokenizer> read_tokenizer(const std::string& path) {
  if (!file_exists(path)) fail("vocabulary '{}' not found", path);
  return parse_tokenizer(read_file(path, kMaxVocabBytes), path);
}

}  // namespace antidote
