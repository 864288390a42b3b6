#include "antidote/data/data.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <unordered_map>

namespace antidote {

const char* modality_name(Modality m) { return m == Modality::Image ? "image" : "text"; }

RawSplit RawSplit::select(const std::vector<int64_t>& idx) const {
  RawSplit out;
  auto index = torch::tensor(idx, torch::kLong);
  if (images.defined()) out.images = images.index_select(0, index);
  if (!texts.empty()) {
    out.texts.reserve(idx.size());
    for (auto i : idx) out.texts.push_back(texts.at(static_cast<size_t>(i)));
  }
  out.labels = labels.index_select(0, index);
  if (poisoned.defined()) out.poisoned = poisoned.index_select(0, index);
  return out;
}

// ---- class counts -----------------------------------------------------------------

int64_t class_count(const RawData& d, int64_t declared, const std::string& train_file, const std::string& test_file) {
  const auto train_max = d.train.labels.max().item<int64_t>(), test_max = d.test.labels.max().item<int64_t>();
  if (declared > 0) {
    if (declared < 2 || declared > kMaxClasses) fail("dataset '{}': num_classes must lie in [2, {}], got {}", d.name,
                                                     kMaxClasses, declared);
    if (train_max >= declared) fail("'{}': label {} is out of range for {} classes", train_file, train_max, declared);
    if (test_max >= declared) fail("'{}': label {} is out of range for {} classes", test_file, test_max, declared);
    return declared;
  }
  // Undeclared: the labels 0..max that the training rows use, each of them at least once,
  // so that one stray label (255, 10^12) cannot silently make a model of that many classes.
  const int64_t n = std::max(train_max, test_max) + 1;
  if (n > kMaxClasses) fail("dataset '{}': label {} implies more than {} classes", d.name, n - 1, kMaxClasses);
  if (n < 2) fail("dataset '{}': fewer than two classes", d.name);
  auto counts = torch::bincount(d.train.labels, {}, n);
  auto missing = (counts == 0).nonzero().flatten();
  if (missing.numel() > 0)
    fail("dataset '{}': labels run up to {} but class {} has no training rows in '{}' ({} classes missing); fix the "
         "labels, or declare the dataset's num_classes",
         d.name, n - 1, missing[0].item<int64_t>(), train_file, missing.numel());
  return n;
}

// ---- IDX ------------------------------------------------------------------------

torch::Tensor read_idx(const std::string& path) {
  if (!file_exists(path)) fail("IDX file not found: '{}'", path);
  const auto data = read_maybe_gzip(path, kMaxDataBytes, [&](const std::string& head) {
    const auto h = parse_idx_header(head, path, kMaxDataBytes);
    return h.offset + h.count;
  });
  const auto h = parse_idx(data, path, kMaxDataBytes);
  auto t = torch::empty(h.shape, torch::kUInt8);
  if (h.count > 0) std::memcpy(t.data_ptr<uint8_t>(), data.data() + h.offset, static_cast<size_t>(h.count));
  return t;
}

namespace {
std::string find_idx(const std::string& dir, const std::string& stem) {
  for (const auto& candidate : {stem, stem + ".gz"}) {
    auto p = (std::filesystem::path(dir) / candidate).string();
    if (file_exists(p)) return p;
  }
  fail("IDX directory '{}' has no '{}' (nor '{}.gz')", dir, stem, stem);
}

RawSplit idx_split(const std::string& dir, const std::string& prefix) {
  auto images_path = find_idx(dir, prefix + "-images-idx3-ubyte");
  auto labels_path = find_idx(dir, prefix + "-labels-idx1-ubyte");
  auto images = read_idx(images_path);
  auto labels = read_idx(labels_path);
  if (images.dim() != 3) fail("'{}' must hold N×H×W images, found {} dimensions", images_path, images.dim());
  if (labels.dim() != 1) fail("'{}' must hold N labels, found {} dimensions", labels_path, labels.dim());
  if (images.size(0) != labels.size(0))
    fail("'{}' holds {} images but '{}' holds {} labels", images_path, images.size(0), labels_path, labels.size(0));
  RawSplit s;
  s.images = images.unsqueeze(1).to(torch::kFloat32).div_(255.0);
  s.labels = labels.to(torch::kLong);
  s.poisoned = torch::zeros({s.size()}, torch::kBool);
  return s;
}
}  // namespace

RawData load_idx_dir(const std::string& dir, const std::string& name, int64_t num_classes) {
  if (!std::filesystem::is_directory(dir)) fail("dataset '{}': directory '{}' not found", name, dir);
  RawData d;
  d.name = name;
  d.modality = Modality::Image;
  d.train = idx_split(dir, "train");
  d.test = idx_split(dir, "t10k");
  if (d.train.images.sizes().slice(1) != d.test.images.sizes().slice(1))
    fail("dataset '{}': train and test images differ in size", name);
  if (d.train.size() == 0 || d.test.size() == 0)
    fail("dataset '{}': the {} split in '{}' has no rows", name, d.train.size() == 0 ? "train" : "t10k", dir);
  d.num_classes = class_count(d, num_classes, dir + "/train-labels-idx1-ubyte", dir + "/t10k-labels-idx1-ubyte");
  return d;
}

// ---- TSV ------------------------------------------------------------------------

TextRows read_tsv(const std::string& path, int64_t max_label) {
  if (!file_exists(path)) fail("TSV file not found: '{}'", path);
  return parse_tsv(read_file(path), path, max_label);
}

RawSplit text_split(const TextRows& rows) {
  RawSplit s;
  s.texts = rows.sentences;
  s.labels = torch::tensor(rows.labels, torch::kLong);
  s.poisoned = torch::zeros({s.size()}, torch::kBool);
  return s;
}

RawData load_tsv_dir(const std::string& dir, const std::string& name, int64_t num_classes) {
  if (dir.empty()) fail("dataset '{}': 'path' is required (a directory with train.tsv and test.tsv)", name);
  if (!std::filesystem::is_directory(dir)) fail("dataset '{}': directory '{}' not found", name, dir);
  RawData d;
  d.name = name;
  d.modality = Modality::Text;
  const auto train = (std::filesystem::path(dir) / "train.tsv").string();
  const auto test = (std::filesystem::path(dir) / "test.tsv").string();
  const int64_t max_label = num_classes > 0 ? num_classes - 1 : kMaxClasses - 1;
  d.train = text_split(read_tsv(train, max_label));
  d.test = text_split(read_tsv(test, max_label));
  d.num_classes = class_count(d, num_classes, train, test);
  return d;
}

RawSplit read_split(const std::string& path, Modality modality, int64_t num_classes, const std::string& what) {
  if (path.empty()) fail("{}: empty path", what);
  RawSplit s;
  try {
    if (modality == Modality::Text) {
      s = text_split(read_tsv(path, num_classes - 1));
    } else {
      const std::filesystem::path p(path);
      const auto dir = p.has_parent_path() ? p.parent_path().string() : std::string(".");
      s = idx_split(dir, p.filename().string());
    }
  } catch (const Error& e) {
    fail("{}: {}", what, e.what());  // the reader names the file; this names the set
  }
  if (s.size() == 0) fail("{}: '{}' has no rows", what, path);
  check_labels(s.labels, num_classes, fmt::format("{} ('{}')", what, path));
  return s;
}

// ---- vocabulary -------------------------------------------------------------------

std::vector<std::string> Vocab::tokenize(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!cur.empty()) out.push_back(std::move(cur)), cur.clear();
    } else {
      cur += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

Vocab Vocab::build(const std::vector<std::string>& texts, int64_t min_freq, int64_t max_size) {
  std::unordered_map<std::string, int64_t> counts;
  for (const auto& t : texts)
    for (auto& w : tokenize(t)) ++counts[w];
  std::vector<std::pair<std::string, int64_t>> items(counts.begin(), counts.end());
  std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  Vocab v;
  v.words_ = {"[PAD]", "[UNK]", "[CLS]"};
  for (const auto& [w, c] : items) {
    if (c < min_freq) break;
    if (max_size > 0 && v.size() >= max_size) break;
    v.words_.push_back(w);
  }
  for (size_t i = 0; i < v.words_.size(); ++i) v.index_[v.words_[i]] = static_cast<int64_t>(i);
  return v;
}

int64_t Vocab::id(const std::string& word) const {
  auto it = index_.find(word);
  return it == index_.end() ? kUnk : it->second;
}

torch::Tensor Vocab::encode(const std::vector<std::string>& texts, int64_t max_len) const {
  if (max_len < 2) fail("max_len must be at least 2, got {}", max_len);
  auto out = torch::full({static_cast<int64_t>(texts.size()), max_len}, kPad, torch::kLong);
  auto acc = out.accessor<int64_t, 2>();
  for (size_t i = 0; i < texts.size(); ++i) {
    acc[i][0] = kCls;
    int64_t j = 1;
    for (const auto& w : tokenize(texts[i])) {
      if (j >= max_len) break;
      acc[i][j++] = id(w);
    }
  }
  return out;
}

std::string Vocab::to_text() const {
  std::string s;
  for (const auto& w : words_) s += w + "\n";
  return s;
}

Vocab Vocab::from_text(const std::string& text, const std::string& origin) {
  Vocab v;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (v.index_.count(line)) fail("vocabulary '{}': word '{}' appears twice", origin, line);
    v.index_[line] = v.size();
    v.words_.push_back(line);
  }
  if (v.size() < 3 || v.words_[kPad] != "[PAD]" || v.words_[kUnk] != "[UNK]" || v.words_[kCls] != "[CLS]")
    fail(
        "vocabulary '{}' must start with [PAD], [UNK], [CLS] (antidote's word vocabulary), or be a WordPiece "
        "vocab.txt (with [PAD], [UNK], [CLS], [SEP] and ## pieces)",
        origin);
  return v;
}

torch::Tensor swap_token_ids(const torch::Tensor& ids, int64_t pad_id) {
  if (pad_id == Vocab::kPad) return ids;
  const auto zero = ids.eq(Vocab::kPad), pad = ids.eq(pad_id);
  return ids.masked_fill(zero, pad_id).masked_fill_(pad, Vocab::kPad);
}

// ---- datasets ---------------------------------------------------------------------

Dataset Dataset::select(const torch::Tensor& idx) const {
  Dataset d;
  d.x = x.index_select(0, idx);
  d.y = y.index_select(0, idx);
  if (poisoned.defined()) d.poisoned = poisoned.index_select(0, idx);
  return d;
}

Dataset Dataset::to(torch::Device dev) const {
  Dataset d;
  d.x = x.to(dev);
  d.y = y.to(dev);
  d.poisoned = poisoned;  // ground truth stays on the CPU: only evaluation reads it
  return d;
}

Dataset concat(const Dataset& a, const Dataset& b) {
  Dataset d;
  d.x = torch::cat({a.x, b.x});
  d.y = torch::cat({a.y, b.y});
  if (a.poisoned.defined() && b.poisoned.defined()) d.poisoned = torch::cat({a.poisoned, b.poisoned});
  return d;
}

void check_labels(const torch::Tensor& labels, int64_t num_classes, const std::string& what) {
  if (labels.numel() == 0) return;
  auto lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
  if (lo < 0 || hi >= num_classes)
    fail("{}: label {} is out of range for {} classes", what, lo < 0 ? lo : hi, num_classes);
}

CleanPool::CleanPool(const torch::Tensor& labels, const torch::Tensor& poisoned, int64_t num_classes, uint64_t seed,
                     bool originals_available)
    : by_class_(static_cast<size_t>(num_classes)) {
  auto y = labels.to(torch::kCPU).contiguous();
  auto p = poisoned.defined() ? poisoned.to(torch::kCPU).contiguous() : torch::zeros_like(y, torch::kBool);
  auto ya = y.accessor<int64_t, 1>();
  auto pa = p.accessor<bool, 1>();
  std::vector<std::vector<int64_t>> originals(by_class_.size());
  for (int64_t i = 0; i < y.size(0); ++i) {
    if (ya[i] < 0 || ya[i] >= num_classes) fail("clean pool: label {} out of range for {} classes", ya[i], num_classes);
    (pa[i] ? originals : by_class_).at(static_cast<size_t>(ya[i])).push_back(i);
  }
  Rng rng(seed ^ 0xc1ea9u);
  for (size_t c = 0; c < by_class_.size(); ++c) {
    rng.shuffle(by_class_[c]);
    rng.shuffle(originals[c]);
    if (originals_available) by_class_[c].insert(by_class_[c].end(), originals[c].begin(), originals[c].end());
  }
}

namespace {
// What to do about a pool that is too small: lower the option that asked, or bring more.
std::string pool_advice(const std::string& option, int64_t fits) {
  if (option.empty()) return "give a larger clean set";
  return fmt::format("set {}: {} or less, or give a larger clean set", option, fits);
}
}  // namespace

torch::Tensor CleanPool::per_class(int64_t per_class, int64_t offset, const std::string& option) const {
  std::vector<int64_t> out;
  for (size_t c = 0; c < by_class_.size(); ++c) {
    const auto& v = by_class_[c];
    const int64_t room = std::max<int64_t>(0, static_cast<int64_t>(v.size()) - offset);
    if (per_class > room)
      fail("clean pool: {} rows of class {} left ({} clean, {} used before) and {} is {}; {}", room, c, v.size(),
           offset, option.empty() ? "the request" : option, per_class, pool_advice(option, room));
    out.insert(out.end(), v.begin() + offset, v.begin() + offset + per_class);
  }
  return torch::tensor(out, torch::kLong);
}

torch::Tensor CleanPool::balanced(int64_t n, int64_t offset, const std::string& option) const {
  std::vector<int64_t> out;
  std::vector<size_t> pos(by_class_.size(), static_cast<size_t>(offset));
  while (static_cast<int64_t>(out.size()) < n) {
    bool any = false;
    for (size_t c = 0; c < by_class_.size() && static_cast<int64_t>(out.size()) < n; ++c) {
      if (pos[c] < by_class_[c].size()) {
        out.push_back(by_class_[c][pos[c]++]);
        any = true;
      }
    }
    if (!any)
      fail("clean pool: only {} clean rows available and {} is {}; {}", out.size(),
           option.empty() ? "the request" : option, n, pool_advice(option, static_cast<int64_t>(out.size())));
  }
  return torch::tensor(out, torch::kLong);
}

DatasetKind dataset_kind(const std::string& name) { return *DatasetRegistry::instance().create("dataset", name); }

namespace {

Registrar<DatasetRegistry> kind(const std::string& name, Modality modality, std::string path, int64_t classes,
                                std::string summary) {
  auto load = modality == Modality::Image ? load_idx_dir : load_tsv_dir;
  return Registrar<DatasetRegistry>(
      name,
      [=] {
        return std::make_shared<DatasetKind>(DatasetKind{modality, path, classes, load});
      },
      std::move(summary));
}

Registrar<DatasetRegistry> reg_fmnist = kind("fmnist", Modality::Image, "/usr/share/datasets/fashion-mnist", 10,
                                             "Fashion-MNIST from Debian's dataset-fashion-mnist (IDX, 10 classes)");
Registrar<DatasetRegistry> reg_idx =
    kind("idx", Modality::Image, "", 0, "any IDX directory (MNIST layout, gzip or raw); path required");
Registrar<DatasetRegistry> reg_sst2 =
    kind("sst2", Modality::Text, "", 2, "SST-2 sentiment (train.tsv, test.tsv; 2 classes); path required");
Registrar<DatasetRegistry> reg_olid =
    kind("olid", Modality::Text, "", 2, "OLID offensive language (TSV, 2 classes); path required");
Registrar<DatasetRegistry> reg_agnews =
    kind("agnews", Modality::Text, "", 4, "AG News topics (TSV, 4 classes); path required");
Registrar<DatasetRegistry> reg_tsv =
    kind("tsv", Modality::Text, "", 0, "any train.tsv/test.tsv directory (sentence, label); path required");

}  // namespace

}  // namespace antidote
