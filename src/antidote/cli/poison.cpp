// `antidote poison`: writes the poisoned training set, the clean and triggered test sets
// (TSV for text, IDX for single-channel images) and the poisoned rows' indices.
#include <iostream>
#include <memory>
#include <string>

#include "antidote/cli/cli.hpp"

namespace antidote::cli {

namespace {

struct PoisonArgs {
  Common common;
  std::string out;
};

void write_tsv(const RawSplit& s, const std::string& path) {
  std::string t = "sentence\tlabel\n";
  for (int64_t i = 0; i < s.size(); ++i) t += s.texts[i] + "\t" + std::to_string(s.labels[i].item<int64_t>()) + "\n";
  write_file_atomic(path, t);
}

// Labels (1-d) or single-channel images in [0, 1] as unsigned-byte IDX.
void write_idx(const torch::Tensor& t, const std::string& path) {
  auto u8 = t.dim() == 1 ? t.to(torch::kUInt8) : (t.squeeze(1).clamp(0, 1) * 255).round().to(torch::kUInt8);
  u8 = u8.contiguous();
  std::string bytes = {0, 0, 0x08, static_cast<char>(u8.dim())};
  for (auto s : u8.sizes())
    for (int sh = 24; sh >= 0; sh -= 8) bytes += static_cast<char>((s >> sh) & 0xff);
  bytes.append(reinterpret_cast<const char*>(u8.data_ptr<uint8_t>()), static_cast<size_t>(u8.numel()));
  write_file_atomic(path, bytes);
}

int cmd_poison(const Common& c, const std::string& out) {
  auto cfg = load_common(c);
  auto f = first_cell(cfg);
  auto cell = prepare_cell(f.data, f.dataset, f.attack, f.seed);
  make_dirs(out);
  std::string rows;
  auto p = cell.train.poisoned.nonzero().flatten();
  for (int64_t i = 0; i < p.numel(); ++i) rows += std::to_string(p[i].item<int64_t>()) + "\n";
  write_file_atomic(out + "/poisoned_rows.txt", rows);
  if (cell.modality == Modality::Text) {
    write_tsv(cell.raw_train, out + "/train.tsv");
    write_tsv(cell.raw_test_clean, out + "/test.tsv");
    write_tsv(cell.raw_test_triggered, out + "/test_triggered.tsv");
  } else {
    if (cell.raw_train.images.size(1) != 1) fail("poison: IDX output supports single-channel images only");
    write_idx(cell.raw_train.images, out + "/train-images-idx3-ubyte");
    write_idx(cell.raw_train.labels, out + "/train-labels-idx1-ubyte");
    write_idx(cell.raw_test_clean.images, out + "/t10k-images-idx3-ubyte");
    write_idx(cell.raw_test_clean.labels, out + "/t10k-labels-idx1-ubyte");
    write_idx(cell.raw_test_triggered.images, out + "/triggered-images-idx3-ubyte");
    write_idx(cell.raw_test_triggered.labels, out + "/triggered-labels-idx1-ubyte");
  }
  std::cout << fmt::format("{} × {}: {} training rows, {} poisoned, {} triggered test rows -> {}\n", f.dataset.name,
                           f.attack.name, cell.train.size(), p.numel(), cell.test_triggered.size(), out);
  return 0;
}

}  // namespace

Subcommand add_poison(CLI::App& app) {
  auto a = std::make_shared<PoisonArgs>();
  auto* poison = app.add_subcommand("poison", "write the poisoned training set and triggered test set");
  add_common(poison, a->common, false);
  poison->add_option("-o,--out", a->out, "output directory")->required();
  return {poison, [a] { return cmd_poison(a->common, a->out); }};
}

}  // namespace antidote::cli
