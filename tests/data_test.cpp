// Data: IDX (raw and gzip) and TSV readers against hand-built files and the
// real files in ../shared/data/text, the vocabulary and tokenizer, and CleanPool.
// Expected values come from the files themselves (counted with awk/od, see comments)
// or are worked out by hand; none is produced by the code under test.
#include <gtest/gtest.h>

#include "support.hpp"
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "antidote/data/data.hpp"

using namespace antidote;
using antidote::testing::error_of;
namespace fs = std::filesystem;

namespace {

const std::string kText = std::string(ANTIDOTE_SHARED_DATA) + "/text";

// The shared text data sits beside the checkout; a clone without it skips these.
#define SKIP_WITHOUT(path) \
  if (!fs::exists(path)) GTEST_SKIP() << (path) << " not found (the shared data is not beside this checkout)"

// A fresh directory under the system temp dir, removed at scope end.
using antidote::testing::TempDir;

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(f);
}

// IDX bytes: magic 00 00 08 ndim, big-endian 32-bit dims, then the values.
std::string idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& values, uint8_t type = 0x08) {
  std::string s = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (auto d : dims)
    for (int sh = 24; sh >= 0; sh -= 8) s += static_cast<char>((d >> sh) & 0xff);
  s.append(values.begin(), values.end());
  return s;
}

std::vector<uint8_t> iota_bytes(int n) {
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<uint8_t>(i);
  return v;
}

std::vector<int64_t> to_vec(const torch::Tensor& t) {
  auto c = t.to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

}  // namespace

// ---- IDX ---------------------------------------------------------------------------

TEST(DataIdx, ReadsRawFile) {
  TempDir dir;
  // 2×2×3 values 0..11 in row-major order: element [1][0][2] = 1·6 + 0·3 + 2 = 8.
  write_bytes(dir.file("a-idx3-ubyte"), idx_bytes({2, 2, 3}, iota_bytes(12)));
  auto t = read_idx(dir.file("a-idx3-ubyte"));
  EXPECT_EQ(t.scalar_type(), torch::kUInt8);
  ASSERT_EQ(t.sizes().vec(), (std::vector<int64_t>{2, 2, 3}));
  EXPECT_EQ(t[1][0][2].item<int>(), 8);
  EXPECT_EQ(t[0][1][1].item<int>(), 4);   // 0·6 + 1·3 + 1
  EXPECT_EQ(t[1][1][2].item<int>(), 11);  // last
}

TEST(DataIdx, ReadsGzipFileWithLargeDimension) {
  TempDir dir;
  // 1-D of 300 labels: dimension 300 = 0x0000012C exercises the second header byte.
  std::vector<uint8_t> v(300);
  for (int i = 0; i < 300; ++i) v[static_cast<size_t>(i)] = static_cast<uint8_t>(i % 7);
  write_gz(dir.file("labels.gz"), idx_bytes({300}, v));
  auto t = read_idx(dir.file("labels.gz"));
  ASSERT_EQ(t.sizes().vec(), (std::vector<int64_t>{300}));
  EXPECT_EQ(t[299].item<int>(), 5);  // 299 = 7·42 + 5
  EXPECT_EQ(t[14].item<int>(), 0);
  // Sum: 42 full cycles of 0..6 (21 each) = 882, plus 0..5 = 15 -> 897.
  EXPECT_EQ(t.to(torch::kLong).sum().item<int64_t>(), 897);
}

TEST(DataIdx, ReadsFashionMnistLabelsFromDebianPackage) {
  const std::string path = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not installed";
  auto t = read_idx(path);
  // Fashion-MNIST's test set: 10000 labels, 1000 of each of the 10 classes.
  ASSERT_EQ(t.sizes().vec(), (std::vector<int64_t>{10000}));
  auto counts = torch::bincount(t.to(torch::kLong));
  ASSERT_EQ(counts.numel(), 10);
  for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[c].item<int64_t>(), 1000) << "class " << c;
}

TEST(DataIdx, ErrorsNameTheFile) {
  TempDir dir;
  auto missing = dir.file("nope-idx1-ubyte");
  auto msg = error_of([&] { read_idx(missing); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;

  auto bad_magic = dir.file("bad_magic");
  auto bytes = idx_bytes({4}, {1, 2, 3, 4});
  bytes[0] = 1;
  write_bytes(bad_magic, bytes);
  msg = error_of([&] { read_idx(bad_magic); });
  EXPECT_NE(msg.find(bad_magic), std::string::npos) << msg;
  EXPECT_NE(msg.find("magic"), std::string::npos) << msg;

  auto bad_type = dir.file("float_type");
  write_bytes(bad_type, idx_bytes({1}, {0, 0, 0, 0}, 0x0D));
  msg = error_of([&] { read_idx(bad_type); });
  EXPECT_NE(msg.find(bad_type), std::string::npos) << msg;

  auto truncated = dir.file("truncated");
  // Header promises 2·2·3 = 12 values; only 11 follow.
  write_bytes(truncated, idx_bytes({2, 2, 3}, iota_bytes(11)));
  msg = error_of([&] { read_idx(truncated); });
  EXPECT_NE(msg.find(truncated), std::string::npos) << msg;
  EXPECT_NE(msg.find("12"), std::string::npos) << msg;
  EXPECT_NE(msg.find("11"), std::string::npos) << msg;

  auto extra = dir.file("extra");
  write_bytes(extra, idx_bytes({2, 2, 3}, iota_bytes(13)));
  msg = error_of([&] { read_idx(extra); });
  EXPECT_NE(msg.find(extra), std::string::npos) << msg;
  // Reading stops once the data runs past the 16 + 12 = 28 bytes the header promises.
  EXPECT_NE(msg.find("28 bytes its header promises"), std::string::npos) << msg;

  auto short_header = dir.file("short_header");
  // Claims 3 dimensions but the file ends after the first: 4 + 4 = 8 bytes of 16.
  write_bytes(short_header, idx_bytes({2, 2, 3}, {}).substr(0, 8));
  msg = error_of([&] { read_idx(short_header); });
  EXPECT_NE(msg.find(short_header), std::string::npos) << msg;

  auto tiny = dir.file("tiny");
  write_bytes(tiny, std::string("\0\0", 2));
  msg = error_of([&] { read_idx(tiny); });
  EXPECT_NE(msg.find(tiny), std::string::npos) << msg;

  auto empty = dir.file("empty");
  write_bytes(empty, "");
  msg = error_of([&] { read_idx(empty); });
  EXPECT_NE(msg.find(empty), std::string::npos) << msg;
}

TEST(DataIdx, TruncatedGzipIsAnError) {
  TempDir dir;
  auto full = dir.file("full.gz");
  std::vector<uint8_t> v(4000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>((i * 131) % 251);
  write_gz(full, idx_bytes({40, 100}, v));
  auto gz = read_file(full);
  ASSERT_GT(gz.size(), 40u);
  auto cut = dir.file("cut.gz");
  write_bytes(cut, gz.substr(0, gz.size() / 2));
  auto msg = error_of([&] { read_idx(cut); });
  EXPECT_NE(msg.find(cut), std::string::npos) << msg;
}

// A user's own set: an IDX pair named by its prefix (images /255, labels checked against
// the class count, errors naming the set and file), or one TSV file.
TEST(DataIdx, ReadsASplitByItsPrefix) {
  TempDir dir;
  write_bytes(dir.file("mine-images-idx3-ubyte"), idx_bytes({2, 2, 2}, {0, 51, 102, 255, 0, 0, 0, 0}));
  write_gz(dir.file("mine-labels-idx1-ubyte.gz"), idx_bytes({2}, {1, 2}));
  auto s = read_split(dir.file("mine"), Modality::Image, 3, "clean");
  ASSERT_EQ(s.images.sizes().vec(), (std::vector<int64_t>{2, 1, 2, 2}));
  EXPECT_FLOAT_EQ(s.images[0][0][0][1].item<float>(), 0.2f);
  EXPECT_EQ(to_vec(s.labels), (std::vector<int64_t>{1, 2}));
  EXPECT_FALSE(s.poisoned.any().item<bool>());
  auto msg = error_of([&] { read_split(dir.file("mine"), Modality::Image, 2, "dataset 'x' clean"); });
  EXPECT_NE(msg.find("dataset 'x' clean"), std::string::npos) << msg;
  EXPECT_NE(msg.find("label 2 is out of range for 2 classes"), std::string::npos) << msg;
  msg = error_of([&] { read_split(dir.file("other"), Modality::Image, 3, "dataset 'x' clean"); });
  EXPECT_NE(msg.find("other-images-idx3-ubyte"), std::string::npos) << msg;
  EXPECT_EQ(msg.rfind("dataset 'x' clean: ", 0), 0u) << msg;
  write_bytes(dir.file("clean.tsv"), "sentence\tlabel\ngood film\t1\nbad film\t0\n");
  auto t = read_split(dir.file("clean.tsv"), Modality::Text, 2, "clean");
  ASSERT_EQ(t.texts.size(), 2u);
  EXPECT_EQ(t.texts[1], "bad film");
  msg = error_of([&] { read_split(dir.file("nope.tsv"), Modality::Text, 2, "dataset 'x' clean"); });
  EXPECT_NE(msg.find("dataset 'x' clean: TSV file not found"), std::string::npos) << msg;
  msg = error_of([&] { read_split(dir.file("clean.tsv"), Modality::Text, 1, "clean"); });
  EXPECT_NE(msg.find("clean.tsv"), std::string::npos) << msg;
}

TEST(DataIdx, LoadsDirectoryOfFourFiles) {
  TempDir dir;
  // Train: 3 images 4×4; image 0 all 255, image 1 all 51, image 2 all 0. Labels 0, 2, 1.
  std::vector<uint8_t> train_px;
  for (uint8_t v : {255, 51, 0})
    for (int i = 0; i < 16; ++i) train_px.push_back(v);
  write_gz(dir.file("train-images-idx3-ubyte.gz"), idx_bytes({3, 4, 4}, train_px));
  write_bytes(dir.file("train-labels-idx1-ubyte"), idx_bytes({3}, {0, 2, 1}));
  // Test: 2 images; labels 3, 0. Class 3 has no training rows, so the class count
  // must be declared (4); inferred, label 3 is an error naming the training labels.
  write_bytes(dir.file("t10k-images-idx3-ubyte"), idx_bytes({2, 4, 4}, std::vector<uint8_t>(32, 102)));
  write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), idx_bytes({2}, {3, 0}));
  auto msg = error_of([&] { load_idx_dir(dir.path.string(), "tiny"); });
  EXPECT_NE(msg.find("class 3 has no training rows"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train-labels-idx1-ubyte"), std::string::npos) << msg;
  msg = error_of([&] { load_idx_dir(dir.path.string(), "tiny", 3); });
  EXPECT_NE(msg.find("label 3 is out of range for 3 classes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("t10k-labels-idx1-ubyte"), std::string::npos) << msg;
  auto d = load_idx_dir(dir.path.string(), "tiny", 4);
  EXPECT_EQ(d.modality, Modality::Image);
  EXPECT_EQ(d.num_classes, 4);
  ASSERT_EQ(d.train.images.sizes().vec(), (std::vector<int64_t>{3, 1, 4, 4}));
  ASSERT_EQ(d.test.images.sizes().vec(), (std::vector<int64_t>{2, 1, 4, 4}));
  EXPECT_EQ(d.train.images.scalar_type(), torch::kFloat32);
  EXPECT_FLOAT_EQ(d.train.images[0][0][1][2].item<float>(), 1.0f);  // 255 / 255
  EXPECT_FLOAT_EQ(d.train.images[1][0][3][3].item<float>(), 0.2f);  // 51 / 255
  EXPECT_FLOAT_EQ(d.train.images[2][0][0][0].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(d.test.images[1][0][0][0].item<float>(), 0.4f);  // 102 / 255
  EXPECT_EQ(to_vec(d.train.labels), (std::vector<int64_t>{0, 2, 1}));
  EXPECT_EQ(to_vec(d.test.labels), (std::vector<int64_t>{3, 0}));
  EXPECT_EQ(d.train.poisoned.sum().item<int64_t>(), 0);
  EXPECT_EQ(d.train.poisoned.numel(), 3);
}

TEST(DataIdx, DirectoryErrorsNameTheCulprit) {
  TempDir dir;
  auto msg = error_of([&] { load_idx_dir((dir.path / "absent").string(), "tiny"); });
  EXPECT_NE(msg.find("absent"), std::string::npos) << msg;

  write_bytes(dir.file("train-images-idx3-ubyte"), idx_bytes({3, 4, 4}, std::vector<uint8_t>(48, 0)));
  msg = error_of([&] { load_idx_dir(dir.path.string(), "tiny"); });
  EXPECT_NE(msg.find("train-labels-idx1-ubyte"), std::string::npos) << msg;

  // 3 images but 2 labels.
  write_bytes(dir.file("train-labels-idx1-ubyte"), idx_bytes({2}, {0, 1}));
  write_bytes(dir.file("t10k-images-idx3-ubyte"), idx_bytes({2, 4, 4}, std::vector<uint8_t>(32, 0)));
  write_bytes(dir.file("t10k-labels-idx1-ubyte"), idx_bytes({2}, {0, 1}));
  msg = error_of([&] { load_idx_dir(dir.path.string(), "tiny"); });
  EXPECT_NE(msg.find("train-images-idx3-ubyte"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train-labels-idx1-ubyte"), std::string::npos) << msg;
}

TEST(DataIdx, EmptyDirectoryFilesAreAClearError) {
  TempDir dir;
  // Well-formed IDX files holding zero images / labels: no classes can be counted, so
  // loading must fail with an antidote::Error naming the dataset, not a LibTorch error
  // (max() of an empty tensor), which the CLI would report as an internal error.
  write_bytes(dir.file("train-images-idx3-ubyte"), idx_bytes({0, 4, 4}, {}));
  write_bytes(dir.file("train-labels-idx1-ubyte"), idx_bytes({0}, {}));
  write_bytes(dir.file("t10k-images-idx3-ubyte"), idx_bytes({0, 4, 4}, {}));
  write_bytes(dir.file("t10k-labels-idx1-ubyte"), idx_bytes({0}, {}));
  std::string msg;
  try {
    load_idx_dir(dir.path.string(), "emptyset");
    msg = "<nothing thrown>";
  } catch (const Error& e) {
    msg = e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-antidote exception: " << e.what();
  }
  EXPECT_NE(msg.find("emptyset"), std::string::npos) << msg;
}

// ---- TSV ---------------------------------------------------------------------------

TEST(DataTsv, Sst2TrainCrlf) {
  SKIP_WITHOUT(kText + "/sst2/train.tsv");
  auto rows = read_tsv(kText + "/sst2/train.tsv");
  // README: 6920 rows; `awk -F'\t'` counts 3610 label 1 and 3310 label 0.
  ASSERT_EQ(rows.sentences.size(), 6920u);
  ASSERT_EQ(rows.labels.size(), 6920u);
  EXPECT_EQ(std::count(rows.labels.begin(), rows.labels.end(), 1), 3610);
  EXPECT_EQ(std::count(rows.labels.begin(), rows.labels.end(), 0), 3310);
  EXPECT_EQ(rows.sentences.front(),
            "a stirring , funny and finally transporting re-imagining of beauty and the beast and 1930s horror films");
  EXPECT_EQ(rows.labels.front(), 1);
  EXPECT_EQ(rows.sentences.back(), "a deliciously nonsensical comedy about a city coming apart at its seams .");
  for (const auto& s : rows.sentences) {
    ASSERT_EQ(s.find('\r'), std::string::npos) << s;
    ASSERT_EQ(s.find('\t'), std::string::npos) << s;
  }
}

TEST(DataTsv, OlidSpacesAroundTab) {
  SKIP_WITHOUT(kText + "/olid/train.tsv");
  auto rows = read_tsv(kText + "/olid/train.tsv");
  // README: 11915 rows; awk: 3954 offensive (1), 7961 not (0). Rows read "… passer \t 0".
  ASSERT_EQ(rows.labels.size(), 11915u);
  EXPECT_EQ(std::count(rows.labels.begin(), rows.labels.end(), 1), 3954);
  EXPECT_EQ(std::count(rows.labels.begin(), rows.labels.end(), 0), 7961);
  EXPECT_EQ(rows.sentences.front(),
            "@USER @USER Mazzone has convinced him he can play in the NFL if he does as he is told and acts like a good "
            "little pocket passer");
  EXPECT_EQ(rows.labels.front(), 0);
  for (const auto& s : rows.sentences) {
    ASSERT_FALSE(s.empty());
    ASSERT_NE(s.back(), ' ') << s;
  }
}

TEST(DataTsv, AgNewsFourClassesSpacedHeader) {
  // Header "sentence \t label"; README: 11106 rows, labels 0–3 (awk: 2820/2801/2730/2755).
  SKIP_WITHOUT(kText + "/agnews/train.tsv");
  auto rows = read_tsv(kText + "/agnews/train.tsv");
  ASSERT_EQ(rows.labels.size(), 11106u);
  EXPECT_EQ(std::count(rows.labels.begin(), rows.labels.end(), 0), 2820);
  EXPECT_EQ(std::count(rows.labels.begin(), rows.labels.end(), 1), 2801);
  EXPECT_EQ(std::count(rows.labels.begin(), rows.labels.end(), 2), 2730);
  EXPECT_EQ(std::count(rows.labels.begin(), rows.labels.end(), 3), 2755);
  EXPECT_EQ(rows.sentences.back(),
            "ap - after delivering a pep talk designed to energize troops preparing to head for iraq, defense "
            "secretary donald h. rumsfeld got a little \"talking to\" himself from disgruntled soldiers .");
}

TEST(DataTsv, NoFinalNewline) {
  // syntactic/sst2/test.tsv ends in "… not funny .\t1" without a newline; 912 rows, all label 1.
  SKIP_WITHOUT(kText + "/syntactic/sst2/test.tsv");
  auto rows = read_tsv(kText + "/syntactic/sst2/test.tsv");
  ASSERT_EQ(rows.labels.size(), 912u);
  EXPECT_EQ(std::count(rows.labels.begin(), rows.labels.end(), 1), 912);
  EXPECT_EQ(rows.sentences.back(), "if it 's not funny , it 's not funny .");
  EXPECT_EQ(rows.sentences.front(), "when we got no movement , it was no yuks .");
}

TEST(DataTsv, PluralHeaderReversedColumnsAndBlankLines) {
  TempDir dir;
  auto p = dir.file("plural.tsv");
  write_bytes(p, "labels\tsentences\r\n2\tfirst one\r\n\r\n0 \t  second  one \r\n1\tthird");
  auto rows = read_tsv(p);
  ASSERT_EQ(rows.labels, (std::vector<int64_t>{2, 0, 1}));
  ASSERT_EQ(rows.sentences, (std::vector<std::string>{"first one", "second  one", "third"}));

  auto q = dir.file("singular.tsv");
  write_bytes(q, "sentences\tlabels\nhello world\t1\ngood bye\t0\n");
  rows = read_tsv(q);
  ASSERT_EQ(rows.labels, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(rows.sentences[1], "good bye");
}

TEST(DataTsv, ErrorsNameFileAndLine) {
  TempDir dir;
  auto bad_label = dir.file("bad_label.tsv");
  write_bytes(bad_label, "sentence\tlabel\r\nfine\t1\r\nbroken\tpositive\r\n");
  auto msg = error_of([&] { read_tsv(bad_label); });
  EXPECT_NE(msg.find(bad_label), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("positive"), std::string::npos) << msg;

  auto trailing = dir.file("trailing.tsv");
  write_bytes(trailing, "sentence\tlabel\nfine\t1x\n");
  msg = error_of([&] { read_tsv(trailing); });
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;

  auto negative = dir.file("negative.tsv");
  write_bytes(negative, "sentence\tlabel\nfine\t1\nok\t0\nbad\t-1\n");
  msg = error_of([&] { read_tsv(negative); });
  EXPECT_NE(msg.find(negative), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 4"), std::string::npos) << msg;

  auto fields = dir.file("fields.tsv");
  write_bytes(fields, "sentence\tlabel\na\t1\nb\t0\nthree\tfields\t1\n");
  msg = error_of([&] { read_tsv(fields); });
  EXPECT_NE(msg.find(fields), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 4"), std::string::npos) << msg;

  auto one_field = dir.file("one_field.tsv");
  write_bytes(one_field, "sentence\tlabel\nno tab here\n");
  msg = error_of([&] { read_tsv(one_field); });
  EXPECT_NE(msg.find(one_field), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;

  auto header = dir.file("header.tsv");
  write_bytes(header, "text_a\tclass\nhello\t1\n");
  msg = error_of([&] { read_tsv(header); });
  EXPECT_NE(msg.find(header), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 1"), std::string::npos) << msg;

  auto empty = dir.file("empty.tsv");
  write_bytes(empty, "");
  msg = error_of([&] { read_tsv(empty); });
  EXPECT_NE(msg.find(empty), std::string::npos) << msg;

  auto header_only = dir.file("header_only.tsv");
  write_bytes(header_only, "sentence\tlabel\r\n");
  msg = error_of([&] { read_tsv(header_only); });
  EXPECT_NE(msg.find(header_only), std::string::npos) << msg;

  auto missing = dir.file("missing.tsv");
  msg = error_of([&] { read_tsv(missing); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
}

TEST(DataTsv, HeaderErrorNamesTheLineItIsOn) {
  // Blank lines before the header are skipped, so the header here is line 3; a bad
  // header's error must name line 3, not line 1.
  TempDir dir;
  auto late_header = dir.file("late_header.tsv");
  write_bytes(late_header, "\n\ntext_a\tclass\nhello\t1\n");
  auto msg = error_of([&] { read_tsv(late_header); });
  EXPECT_NE(msg.find(late_header), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  // And a good header after blank lines is accepted.
  auto ok = dir.file("late_ok.tsv");
  write_bytes(ok, "\r\n\r\nsentence\tlabel\r\nhello\t1\r\n");
  EXPECT_EQ(read_tsv(ok).labels, (std::vector<int64_t>{1}));
}

TEST(DataTsv, LoadsDirectoryAndCountsClasses) {
  TempDir dir;
  write_bytes(dir.file("train.tsv"), "sentence\tlabel\na b\t0\nc d\t2\n");
  write_bytes(dir.file("test.tsv"), "sentence\tlabel\ne f\t1\n");
  // Training labels 0 and 2: class 1 has no rows, so three classes must be declared.
  auto missing = error_of([&] { load_tsv_dir(dir.path.string(), "mine"); });
  EXPECT_NE(missing.find("class 1 has no training rows"), std::string::npos) << missing;
  auto d = load_tsv_dir(dir.path.string(), "mine", 3);
  EXPECT_EQ(d.modality, Modality::Text);
  EXPECT_EQ(d.num_classes, 3);
  EXPECT_EQ(d.train.texts, (std::vector<std::string>{"a b", "c d"}));
  EXPECT_EQ(to_vec(d.train.labels), (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(d.test.size(), 1);
  EXPECT_FALSE(d.train.poisoned.any().item<bool>());

  auto msg = error_of([&] { load_tsv_dir("", "sst2"); });
  EXPECT_NE(msg.find("path"), std::string::npos) << msg;
  msg = error_of([&] { load_tsv_dir((dir.path / "absent").string(), "sst2"); });
  EXPECT_NE(msg.find("absent"), std::string::npos) << msg;
  fs::remove(dir.path / "test.tsv");
  msg = error_of([&] { load_tsv_dir(dir.path.string(), "mine"); });
  EXPECT_NE(msg.find("test.tsv"), std::string::npos) << msg;
}

// ---- vocabulary --------------------------------------------------------------------

TEST(DataVocab, FrequencyThenAlphabeticalIndependentOfRowOrder) {
  // Counts: a 3, c 2, b 1, d 1 -> a, c, then the ties b < d alphabetically.
  std::vector<std::string> texts{"b A c a", "c a", "d"};
  auto v = Vocab::build(texts);
  const std::vector<std::string> expected{"[PAD]", "[UNK]", "[CLS]", "a", "c", "b", "d"};
  EXPECT_EQ(v.words(), expected);
  std::vector<std::string> reversed(texts.rbegin(), texts.rend());
  EXPECT_EQ(Vocab::build(reversed).words(), expected);
  std::vector<std::string> shuffled{"c a", "d", "b A c a"};
  EXPECT_EQ(Vocab::build(shuffled).words(), expected);
  EXPECT_EQ(v.size(), 7);
  EXPECT_EQ(v.id("a"), 3);
  EXPECT_EQ(v.id("d"), 6);
  EXPECT_EQ(v.id("zebra"), Vocab::kUnk);
  EXPECT_EQ(v.id("[PAD]"), 0);
  EXPECT_EQ(v.id("[CLS]"), 2);

  // min_freq 2 keeps a (3) and c (2); max_size 4 keeps the 3 specials + a.
  EXPECT_EQ(Vocab::build(texts, 2).words(), (std::vector<std::string>{"[PAD]", "[UNK]", "[CLS]", "a", "c"}));
  EXPECT_EQ(Vocab::build(texts, 1, 4).words(), (std::vector<std::string>{"[PAD]", "[UNK]", "[CLS]", "a"}));
}

TEST(DataVocab, TokenizeLowercasesAndSplitsWhitespace) {
  EXPECT_EQ(Vocab::tokenize("  Hello\tWORLD  it's\r\n fine "),
            (std::vector<std::string>{"hello", "world", "it's", "fine"}));
  EXPECT_TRUE(Vocab::tokenize("   ").empty());
}

TEST(DataVocab, EncodeClsPadUnkTruncate) {
  auto v = Vocab::build({"b A c a", "c a", "d"});  // a 3, c 4, b 5, d 6
  auto ids = v.encode({"a b zzz", "D c a b", ""}, 4);
  ASSERT_EQ(ids.sizes().vec(), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(ids.scalar_type(), torch::kLong);
  EXPECT_EQ(to_vec(ids[0]), (std::vector<int64_t>{2, 3, 5, 1}));  // [CLS] a b [UNK]
  EXPECT_EQ(to_vec(ids[1]), (std::vector<int64_t>{2, 6, 4, 3}));  // [CLS] d c a — "b" truncated
  EXPECT_EQ(to_vec(ids[2]), (std::vector<int64_t>{2, 0, 0, 0}));  // [CLS] then [PAD]
  auto wide = v.encode({"a b zzz"}, 6);
  EXPECT_EQ(to_vec(wide[0]), (std::vector<int64_t>{2, 3, 5, 1, 0, 0}));
  EXPECT_THROW(v.encode({"a"}, 1), Error);
}

TEST(DataVocab, TextRoundTrip) {
  auto v = Vocab::build({"the cat sat on the mat", "The dog"});
  auto text = v.to_text();
  auto w = Vocab::from_text(text, "vocab.txt");
  EXPECT_EQ(w.words(), v.words());
  for (const auto& word : v.words()) EXPECT_EQ(w.id(word), v.id(word)) << word;
  EXPECT_EQ(to_vec(w.encode({"the mat bird"}, 5)), to_vec(v.encode({"the mat bird"}, 5)));
  // CRLF survives too.
  auto w2 = Vocab::from_text("[PAD]\r\n[UNK]\r\n[CLS]\r\nx\r\n", "crlf");
  EXPECT_EQ(w2.id("x"), 3);

  auto msg = error_of([] { Vocab::from_text("[PAD]\n[UNK]\n[CLS]\nx\nx\n", "dup.txt"); });
  EXPECT_NE(msg.find("dup.txt"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'x'"), std::string::npos) << msg;
  msg = error_of([] { Vocab::from_text("a\nb\nc\n", "nospecials.txt"); });
  EXPECT_NE(msg.find("nospecials.txt"), std::string::npos) << msg;
}

// ---- CleanPool ---------------------------------------------------------------------

namespace {
// 30 rows, label i % 3; rows 0..5 poisoned (two per class): 8 clean rows per class.
struct PoolData {
  torch::Tensor labels, poisoned;
  PoolData() {
    std::vector<int64_t> y(30);
    for (int i = 0; i < 30; ++i) y[static_cast<size_t>(i)] = i % 3;
    labels = torch::tensor(y, torch::kLong);
    poisoned = torch::zeros({30}, torch::kBool);
    poisoned.slice(0, 0, 6).fill_(true);
  }
};

std::set<int64_t> as_set(const torch::Tensor& t) {
  auto v = to_vec(t);
  return {v.begin(), v.end()};
}
}  // namespace

TEST(DataCleanPool, OnlyUnpoisonedRows) {
  PoolData d;
  CleanPool pool(d.labels, d.poisoned, 3, 42);
  for (int c = 0; c < 3; ++c) EXPECT_EQ(pool.available(c), 8);
  auto all = pool.per_class(8);
  ASSERT_EQ(all.numel(), 24);
  auto s = as_set(all);
  EXPECT_EQ(s.size(), 24u);
  for (auto i : s) EXPECT_GE(i, 6) << "poisoned row " << i << " drawn";
  // per_class output is class by class: 8 rows of class 0, then 1, then 2.
  auto v = to_vec(all);
  for (size_t k = 0; k < v.size(); ++k) EXPECT_EQ(v[k] % 3, static_cast<int64_t>(k / 8));
  EXPECT_THROW(pool.per_class(9), Error);
  EXPECT_THROW(pool.per_class(3, 6), Error);  // 6 + 3 > 8
  EXPECT_THROW(pool.balanced(25), Error);     // only 24 clean rows
}

TEST(DataCleanPool, DisjointWhenOffsetsDiffer) {
  PoolData d;
  CleanPool pool(d.labels, d.poisoned, 3, 7);
  auto a = as_set(pool.per_class(3, 0));
  auto b = as_set(pool.per_class(5, 3));
  EXPECT_EQ(a.size(), 9u);
  EXPECT_EQ(b.size(), 15u);
  for (auto i : a) EXPECT_EQ(b.count(i), 0u) << i;

  auto c = pool.balanced(7, 0);
  auto e = pool.balanced(6, 4);
  // Round robin over 3 classes: 7 rows -> classes 0,1,2,0,1,2,0 -> 3, 2, 2.
  auto cv = to_vec(c);
  ASSERT_EQ(cv.size(), 7u);
  for (size_t k = 0; k < cv.size(); ++k) EXPECT_EQ(cv[k] % 3, static_cast<int64_t>(k % 3));
  auto cs = as_set(c), es = as_set(e);
  EXPECT_EQ(cs.size(), 7u);
  EXPECT_EQ(es.size(), 6u);
  for (auto i : cs) EXPECT_EQ(es.count(i), 0u) << i;
  // balanced and per_class share the per-class order: the first row of each class agree.
  auto first = to_vec(pool.per_class(1, 0));
  EXPECT_EQ(std::vector<int64_t>(cv.begin(), cv.begin() + 3), first);
}

TEST(DataCleanPool, DeterministicPerSeed) {
  PoolData d;
  CleanPool a(d.labels, d.poisoned, 3, 123), b(d.labels, d.poisoned, 3, 123), c(d.labels, d.poisoned, 3, 124);
  EXPECT_EQ(to_vec(a.per_class(8)), to_vec(b.per_class(8)));
  EXPECT_EQ(to_vec(a.balanced(10, 1)), to_vec(b.balanced(10, 1)));
  // A different seed reorders (8! orders per class: equal orders for all three are
  // vanishingly unlikely), but draws the same clean rows.
  EXPECT_NE(to_vec(a.per_class(8)), to_vec(c.per_class(8)));
  EXPECT_EQ(as_set(a.per_class(8)), as_set(c.per_class(8)));
}

TEST(DataCleanPool, OriginalsAppendedLast) {
  PoolData d;
  CleanPool pool(d.labels, d.poisoned, 3, 42, /*originals_available=*/true);
  for (int c = 0; c < 3; ++c) EXPECT_EQ(pool.available(c), 10);
  // The first 8 of every class are the clean rows, the last 2 the poisoned rows 0..5.
  EXPECT_EQ(to_vec(pool.per_class(8)), to_vec(CleanPool(d.labels, d.poisoned, 3, 42).per_class(8)))
      << "clean order must not depend on originals_available";
  auto tail = as_set(pool.per_class(2, 8));
  EXPECT_EQ(tail, (std::set<int64_t>{0, 1, 2, 3, 4, 5}));
  for (auto i : as_set(pool.per_class(8, 0))) EXPECT_GE(i, 6);
}

TEST(DataCleanPool, NoPoisonMaskAndBadLabels) {
  PoolData d;
  CleanPool pool(d.labels, torch::Tensor(), 3, 1);
  for (int c = 0; c < 3; ++c) EXPECT_EQ(pool.available(c), 10);
  EXPECT_THROW(CleanPool(d.labels, d.poisoned, 2, 1), Error);  // label 2 with 2 classes

  auto msg = error_of([] { check_labels(torch::tensor({0, 1, 4}, torch::kLong), 3, "my labels"); });
  EXPECT_NE(msg.find("my labels"), std::string::npos) << msg;
  EXPECT_NE(msg.find("4"), std::string::npos) << msg;
  msg = error_of([] { check_labels(torch::tensor({0, -1}, torch::kLong), 3, "neg"); });
  EXPECT_NE(msg.find("-1"), std::string::npos) << msg;
  EXPECT_NO_THROW(check_labels(torch::tensor({0, 2}, torch::kLong), 3, "ok"));
}

TEST(DataDataset, SelectConcatAndHideGroundTruth) {
  Dataset d;
  d.x = torch::arange(12, torch::kFloat32).view({4, 3});
  d.y = torch::tensor({0, 1, 0, 1}, torch::kLong);
  d.poisoned = torch::tensor({false, true, false, false});
  auto s = d.select(torch::tensor({3, 1}, torch::kLong));
  EXPECT_EQ(to_vec(s.y), (std::vector<int64_t>{1, 1}));
  EXPECT_FLOAT_EQ(s.x[0][0].item<float>(), 9.0f);  // row 3 starts at 3·3
  EXPECT_TRUE(s.poisoned[1].item<bool>());
  auto hidden = d.without_ground_truth();
  EXPECT_FALSE(hidden.poisoned.defined());
  auto c = concat(d, s);
  EXPECT_EQ(c.size(), 6);
  EXPECT_EQ(c.poisoned.sum().item<int64_t>(), 2);
  EXPECT_FALSE(concat(d, hidden).poisoned.defined());

  RawSplit r;
  r.texts = {"a", "b", "c"};
  r.labels = torch::tensor({0, 1, 2}, torch::kLong);
  r.poisoned = torch::tensor({false, false, true});
  auto rs = r.select({2, 0});
  EXPECT_EQ(rs.texts, (std::vector<std::string>{"c", "a"}));
  EXPECT_EQ(to_vec(rs.labels), (std::vector<int64_t>{2, 0}));
  EXPECT_TRUE(rs.poisoned[0].item<bool>());
}
