// Data: IDX and TSV readers, the word vocabulary, raw and encoded datasets, and the
// seeded pool that clean sets for defenses are drawn from.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "antidote/core/common.hpp"
#include "antidote/core/registry.hpp"
#include "antidote/data/formats.hpp"

namespace antidote {

enum class Modality { Image, Text };

// The most classes a dataset or model may have: far beyond any classifier antidote
// meets, small enough that nothing sized by it fails to allocate.
constexpr int64_t kMaxClasses = 100000;
const char* modality_name(Modality m);

// A split before encoding: images in [0, 1] or raw sentences, plus labels and the
// ground-truth poison mask (read only by evaluation, never by a defense).
struct RawSplit {
  torch::Tensor images;            // float32 [N, C, H, W] in [0, 1] (image data)
  std::vector<std::string> texts;  // sentences (text data)
  torch::Tensor labels;            // int64 [N]
  torch::Tensor poisoned;          // bool [N]

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  bool is_image() const { return images.defined(); }
  RawSplit select(const std::vector<int64_t>& idx) const;
};

struct RawData {
  std::string name;
  Modality modality = Modality::Image;
  int64_t num_classes = 0;
  RawSplit train, test;
  // Optional sets of the user's own (empty when not given): a clean labelled set that
  // the defenses draw their clean rows from, and triggered test rows with their true
  // labels.
  RawSplit clean, triggered;
};

// ---- readers -------------------------------------------------------------------
// IDX (MNIST format), gzip-compressed or raw. Returns a uint8 tensor of the stored shape.
torch::Tensor read_idx(const std::string& path);
// Directory with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-… (each
// optionally .gz). Images become float [N, 1, H, W] in [0, 1]. `num_classes` as in
// class_count.
RawData load_idx_dir(const std::string& dir, const std::string& name, int64_t num_classes = 0);

// The TSV format of parse_tsv, from a file; labels above `max_label` are errors.
TextRows read_tsv(const std::string& path, int64_t max_label = kMaxClasses - 1);
// Directory with train.tsv and test.tsv (dev.tsv optional, unused).
RawData load_tsv_dir(const std::string& dir, const std::string& name, int64_t num_classes = 0);
RawSplit text_split(const TextRows& rows);
// One labelled split from a path: a TSV file (text), or for images an IDX pair named
// by its prefix, `<path>-images-idx3-ubyte` and `<path>-labels-idx1-ubyte` (each
// optionally .gz). Labels must lie below `num_classes`; `what` names the set in errors.
RawSplit read_split(const std::string& path, Modality modality, int64_t num_classes, const std::string& what);

// A dataset known by name: its modality, default location, declared class count and
// reader. Each registers itself with a Registrar<DatasetRegistry> (data.cpp holds the
// built-in ones), so adding one is one registration.
struct DatasetKind {
  Modality modality = Modality::Image;
  std::string default_path;  // "" = the config must give `path`
  int64_t classes = 0;       // 0 = the labels' own count
  std::function<RawData(const std::string& dir, const std::string& name, int64_t num_classes)> load;
};
using DatasetRegistry = Registry<DatasetKind>;
// The registered dataset `name`; an unknown name is an error that lists the known ones.
DatasetKind dataset_kind(const std::string& name);

// The number of classes of `d`: `declared` when > 0 (every label must lie below it),
// else the largest label + 1, where every class below it must have training rows.
// Errors name the label files.
int64_t class_count(const RawData& d, int64_t declared, const std::string& train_file, const std::string& test_file);

// ---- text encoding -------------------------------------------------------------
// How sentences become token ids: antidote's word vocabulary (Vocab, below) or a
// BERT-style model's WordPiece vocabulary (data/wordpiece.hpp, which also reads either
// kind from a vocabulary file).
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // [N, max_len] int64 ids of the vocabulary, each row padded with pad_id().
  virtual torch::Tensor encode(const std::vector<std::string>& texts, int64_t max_len) const = 0;
  virtual int64_t pad_id() const = 0;
  virtual int64_t size() const = 0;         // ids run from 0 to size() - 1
  virtual std::string to_text() const = 0;  // the vocabulary file: one token per line, the line is the id
};

// The defenses read token id 0 as padding (Vocab::kPad). A vocabulary whose [PAD] has
// another id is fed to them with the ids 0 and `pad_id` exchanged; applying this twice
// gives the vocabulary's own ids back.
torch::Tensor swap_token_ids(const torch::Tensor& ids, int64_t pad_id);

class Vocab : public Tokenizer {
 public:
  static constexpr int64_t kPad = 0, kUnk = 1, kCls = 2;
  // Words ordered by frequency, then alphabetically: independent of row order.
  static Vocab build(const std::vector<std::string>& texts, int64_t min_freq = 1, int64_t max_size = 0);
  static std::vector<std::string> tokenize(const std::string& text);  // lowercase, whitespace split
  // [N, max_len] int64: [CLS] then tokens, truncated, padded with [PAD].
  torch::Tensor encode(const std::vector<std::string>& texts, int64_t max_len) const override;
  int64_t pad_id() const override { return kPad; }
  int64_t id(const std::string& word) const;
  int64_t size() const override { return static_cast<int64_t>(words_.size()); }
  const std::vector<std::string>& words() const { return words_; }
  std::string to_text() const override;  // one word per line
  static Vocab from_text(const std::string& text, const std::string& origin);

 private:
  std::vector<std::string> words_;
  std::unordered_map<std::string, int64_t> index_;
};

// ---- encoded datasets ----------------------------------------------------------
struct Dataset {
  torch::Tensor x;         // images float [N, C, H, W]; text int64 token ids [N, L]
  torch::Tensor y;         // int64 [N]
  torch::Tensor poisoned;  // bool [N]; undefined where hidden from a defense

  int64_t size() const { return y.defined() ? y.size(0) : 0; }
  Dataset select(const torch::Tensor& idx) const;
  Dataset without_ground_truth() const { return Dataset{x, y, torch::Tensor()}; }
  Dataset to(torch::Device d) const;
};

Dataset concat(const Dataset& a, const Dataset& b);

// Clean rows for defenses: only rows whose ground truth says "not poisoned". Each
// class gets its own seeded order; a request takes the next rows of every class,
// so sets drawn one after another are disjoint, and the same seed always yields
// the same rows for every defense (baselines use the clean set of the defense
// they are compared with).
class CleanPool {
 public:
  // `labels` are true labels. Rows marked poisoned come last in each class, and only
  // when `originals_available` (their clean originals exist, e.g. a clean-label attack
  // that poisoned a whole class); otherwise they are never drawn.
  CleanPool(const torch::Tensor& labels, const torch::Tensor& poisoned, int64_t num_classes, uint64_t seed,
            bool originals_available = false);
  // `n` rows balanced over classes (round robin), starting `offset_per_class` deep.
  // `option` names the key that set the count, so that a pool too small says which
  // key to lower and to what.
  torch::Tensor balanced(int64_t n, int64_t offset_per_class = 0, const std::string& option = "") const;
  // `per_class` rows of every class, starting `offset_per_class` deep.
  torch::Tensor per_class(int64_t per_class, int64_t offset_per_class = 0, const std::string& option = "") const;
  int64_t available(int64_t cls) const { return static_cast<int64_t>(by_class_.at(cls).size()); }

 private:
  std::vector<std::vector<int64_t>> by_class_;
};

void check_labels(const torch::Tensor& labels, int64_t num_classes, const std::string& what);

}  // namespace antidote
