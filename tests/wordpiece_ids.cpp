// Prints the token ids antidote's tokenizer gives each row of a TSV file, one row per
// line, for tests/bert_roundtrip_test.sh to compare with the Python reference
// (tests/python/check_bert.py tokens).
//
//   wordpiece_ids VOCAB TSV MAX_LEN
#include <iostream>
#include <string>

#include "antidote/data/wordpiece.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: wordpiece_ids VOCAB TSV MAX_LEN\n";
    return 2;
  }
  try {
    const auto tokenizer = antidote::read_tokenizer(argv[1]);
    const auto rows = antidote::read_tsv(argv[2]);
    const auto ids = tokenizer->encode(rows.sentences, std::stoll(argv[3]));
    const auto acc = ids.accessor<int64_t, 2>();
    std::string out;
    for (int64_t i = 0; i < ids.size(0); ++i) {
      for (int64_t j = 0; j < ids.size(1); ++j) out += (j ? " " : "") + std::to_string(acc[i][j]);
      out += "\n";
    }
    std::cout << out;
  } catch (const std::exception& e) {
    std::cerr << "wordpiece_ids: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
