// Models: every registered architecture's output shapes, the prunable layer,
// deep copies, save/load round trips, the fit check, option checking, and the
// Python-readable state_dict.
#include <gtest/gtest.h>

#include "support.hpp"
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "antidote/models/model.hpp"

using namespace antidote;
using antidote::testing::error_of;
namespace fs = std::filesystem;

namespace {
bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

using antidote::testing::TempDir;

InputSpec image_spec(int64_t classes = 3, int64_t c = 1, int64_t hw = 8) {
  InputSpec in;
  in.modality = Modality::Image;
  in.channels = c;
  in.height = in.width = hw;
  in.num_classes = classes;
  return in;
}

InputSpec text_spec(int64_t classes = 3) {
  InputSpec in;
  in.modality = Modality::Text;
  in.vocab_size = 20;
  in.max_len = 6;
  in.num_classes = classes;
  return in;
}

torch::Tensor image_batch(int64_t b = 2, int64_t c = 1, int64_t hw = 8) {
  torch::manual_seed(123);
  return torch::rand({b, c, hw, hw});
}

// [CLS] then ids in 3..19, with trailing [PAD] on the second row.
torch::Tensor token_batch() {
  return torch::tensor({{2, 5, 7, 9, 11, 13}, {2, 4, 19, 3, 0, 0}}, torch::kLong);
}

std::vector<int64_t> shape(const torch::Tensor& t) { return t.sizes().vec(); }

struct Case {
  std::string arch, options;
  bool text;
  std::vector<int64_t> features, last_activation;
  int64_t prunable;
};

// Expected shapes, B = 2, K = 3:
//  cnn width 4 hidden 16 on 1×8×8: conv2 gives 2·4 = 8 channels at 8/2 = 4×4; features = hidden.
//  preact_resnet18 width 2 on 1×8×8: stages at 8, 4, 2, 1 pixels; last stage 8·2 = 16 channels.
//  transformer dim 8, max_len 6: token states [2, 6, 8]; prunable = dim.
//  textcnn filters 5, kernels [2, 3]: features 5·2 = 10 = prunable.
const std::vector<Case> kCases = {
    {"cnn", "{width: 4, hidden: 16}", false, {2, 16}, {2, 8, 4, 4}, 8},
    {"preact_resnet18", "{width: 2}", false, {2, 16}, {2, 16, 1, 1}, 16},
    {"transformer", "{dim: 8, heads: 2, layers: 2, ff: 16}", true, {2, 6, 8}, {2, 6, 8}, 8},
    {"textcnn", "{dim: 8, filters: 5, kernels: [2, 3]}", true, {2, 10}, {2, 10}, 10},
};

ClassifierPtr build(const Case& c, int64_t classes = 3) {
  torch::manual_seed(7);
  return make_model(c.arch, c.text ? text_spec(classes) : image_spec(classes), YAML::Load(c.options));
}

torch::Tensor input_for(const Case& c) { return c.text ? token_batch() : image_batch(); }
}  // namespace

TEST(ModelsShapes, EveryRegisteredArch) {
  std::set<std::string> covered;
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.arch);
    auto m = build(c);
    m->eval();
    torch::NoGradGuard ng;
    auto out = m->forward_full(input_for(c), true);
    EXPECT_EQ(shape(out.logits), (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(shape(out.features), c.features);
    ASSERT_FALSE(out.activations.empty());
    EXPECT_EQ(shape(out.activations.back()), c.last_activation);
    EXPECT_EQ(m->prunable_channels(), c.prunable);
    EXPECT_EQ(m->prune_mask().numel(), c.prunable);
    // Without keep_activations none are collected.
    EXPECT_TRUE(m->forward(input_for(c)).activations.empty());
    EXPECT_EQ(m->spec.arch, c.arch);
    EXPECT_NO_THROW(check_model_fits(*m, c.text ? text_spec() : image_spec(), c.arch));
    covered.insert(c.arch);
  }
  // Every registered architecture is covered here.
  for (const auto& [name, entry] : ModelRegistry::instance().entries())
    EXPECT_TRUE(covered.count(name)) << "architecture '" << name << "' has no shape test";
}

TEST(ModelsShapes, ActivationCounts) {
  torch::NoGradGuard ng;
  // cnn: conv1, conv2 -> 2; resnet: one per stage -> 4; transformer: one per layer -> 2;
  // textcnn: one per kernel + the pooled features -> 3.
  const std::vector<size_t> counts{2, 4, 2, 3};
  for (size_t i = 0; i < kCases.size(); ++i) {
    auto m = build(kCases[i]);
    m->eval();
    EXPECT_EQ(m->forward_full(input_for(kCases[i]), true).activations.size(), counts[i]) << kCases[i].arch;
  }
  // resnet stage shapes on 8×8: [2,2,8,8], [2,4,4,4], [2,8,2,2], [2,16,1,1].
  auto r = build(kCases[1]);
  r->eval();
  auto acts = r->forward_full(image_batch(), true).activations;
  EXPECT_EQ(shape(acts[0]), (std::vector<int64_t>{2, 2, 8, 8}));
  EXPECT_EQ(shape(acts[1]), (std::vector<int64_t>{2, 4, 4, 4}));
  EXPECT_EQ(shape(acts[2]), (std::vector<int64_t>{2, 8, 2, 2}));
}

// The small CNN runs channels-last end to end, also with one input channel: there
// NCHW strides pass is_contiguous(ChannelsLast), yet a convolution with such a weight
// hands back an NCHW output, whose max-pool was ~10x slower. The weights must carry
// explicit channels-last strides, and the outputs then follow.
TEST(ModelsLayout, CnnIsChannelsLastWithOneInputChannel) {
  torch::NoGradGuard ng;
  auto m = build(kCases[0]);
  m->eval();
  auto x = image_batch(2, 1, 8);
  auto acts = m->forward_full(x, true).activations;
  for (const auto& p : m->named_parameters())
    if (p.value().dim() == 4) EXPECT_EQ(p.value().suggest_memory_format(), at::MemoryFormat::ChannelsLast) << p.key();
  for (const auto& a : acts) EXPECT_EQ(a.suggest_memory_format(), at::MemoryFormat::ChannelsLast);
  // The layout is not a change of values: the same network written with plain NCHW
  // tensors (conv, pool, ReLU twice, then fc1, ReLU, fc2) gives the same logits.
  auto P = m->named_parameters();
  auto nchw = [&](const char* k) { return P[k].contiguous().clone(); };
  namespace F = torch::nn::functional;
  auto h = torch::relu(torch::max_pool2d(
      F::conv2d(x.contiguous(), nchw("conv1.weight"), F::Conv2dFuncOptions().bias(nchw("conv1.bias")).padding(1)), 2));
  h = torch::relu(torch::max_pool2d(
      F::conv2d(h, nchw("conv2.weight"), F::Conv2dFuncOptions().bias(nchw("conv2.bias")).padding(1)), 2));
  h = torch::relu(F::linear(h.flatten(1), nchw("fc1.weight"), nchw("fc1.bias")));
  auto ref = F::linear(h, nchw("fc2.weight"), nchw("fc2.bias"));
  EXPECT_TRUE(torch::allclose(m->forward_full(x, false).logits, ref, 1e-5, 1e-6));
}

TEST(ModelsCopy, CloneDeepEqualOutputsIndependentParameters) {
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.arch);
    auto m = build(c);
    m->eval();
    auto copy = m->clone_deep();
    EXPECT_FALSE(copy->is_training());
    torch::NoGradGuard ng;
    auto x = input_for(c);
    auto before = m->logits(x).clone();
    EXPECT_TRUE(torch::equal(copy->logits(x), before));
    for (auto& p : copy->parameters()) p.add_(1.0);
    EXPECT_TRUE(torch::equal(m->logits(x), before)) << "changing the copy changed the original";
    EXPECT_FALSE(torch::equal(copy->logits(x), before));
  }
}

// While alive, a batch-norm network in training mode leaves its running statistics as
// they were, and normalises with them (kRunning: the evaluation-mode output) or with the
// batch's (kBatch: the training-mode output); gradients flow, and everything is as before
// after; a network without batch norm gives exactly its training-mode output.
TEST(ModelsBatchNorm, KeepRunningStatistics) {
  using Normalise = KeepRunningStatistics::Normalise;
  auto resnet = make_model("preact_resnet18", image_spec(3, 1, 8), YAML::Load("{width: 4}"));
  auto x = image_batch(4);
  // Running statistics away from (0, 1), so that batch and running statistics differ.
  torch::NoGradGuard ng;
  resnet->train();
  for (int i = 0; i < 3; ++i) resnet->logits(x * 3 + 1);
  std::vector<torch::Tensor> stats;
  for (auto& b : resnet->buffers())
    if (b.is_floating_point()) stats.push_back(b.clone());
  resnet->eval();
  auto eval_out = resnet->logits(x);
  resnet->train();
  auto copy = resnet->clone_deep();
  copy->train();
  auto train_out = copy->logits(x);  // the batch's statistics (and the copy's running ones move)
  for (auto [with, expected] : {std::pair{Normalise::kRunning, eval_out}, std::pair{Normalise::kBatch, train_out}}) {
    torch::AutoGradMode grad(true);
    KeepRunningStatistics keep(*resnet, with);
    auto out = resnet->logits(x);
    EXPECT_TRUE(torch::allclose(out, expected, 1e-5, 1e-6));
    out.sum().backward();
    EXPECT_TRUE(resnet->parameters().front().grad().defined());
  }
  size_t i = 0;
  for (auto& b : resnet->buffers())
    if (b.is_floating_point()) EXPECT_TRUE(torch::equal(b, stats[i++])) << "running statistics " << i;
  for (const auto& m : resnet->modules(false)) EXPECT_TRUE(m->is_training());
  resnet->logits(x);  // back to updating its running statistics
  EXPECT_FALSE(torch::equal(resnet->buffers()[0], stats[0]) && torch::equal(resnet->buffers()[1], stats[1]));

  auto cnn = make_model("cnn", image_spec(3, 1, 8), YAML::Load("{}"));
  cnn->train();
  auto cnn_out = cnn->logits(x);
  KeepRunningStatistics none(*cnn, Normalise::kRunning);
  EXPECT_TRUE(cnn->is_training());
  EXPECT_TRUE(torch::equal(cnn->logits(x), cnn_out));
}

TEST(ModelsCopy, CloneKeepsPruneMask) {
  auto m = build(kCases[0]);
  m->eval();
  auto keep = torch::ones({8});
  keep[1] = 0;
  m->set_prune_mask(keep);
  auto copy = m->clone_deep();
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::equal(copy->prune_mask(), keep));
  EXPECT_TRUE(torch::equal(copy->logits(image_batch()), m->logits(image_batch())));
}

TEST(ModelsSave, RoundTripIdenticalLogits) {
  TempDir dir;
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.arch);
    auto m = build(c);
    m->eval();
    auto path = dir.file(c.arch + ".pt");
    m->save_file(path);
    EXPECT_TRUE(fs::exists(path + ".yaml"));
    auto expected_input = c.text ? text_spec() : image_spec();
    auto loaded = load_model(path, &expected_input);
    loaded->eval();
    EXPECT_EQ(loaded->spec.arch, c.arch);
    torch::NoGradGuard ng;
    auto x = input_for(c);
    EXPECT_TRUE(torch::equal(loaded->logits(x), m->logits(x)));
  }
}

TEST(ModelsSave, PrunedModelRoundTrip) {
  TempDir dir;
  auto m = build(kCases[0]);
  m->eval();
  auto keep = torch::ones({8});
  keep[0] = 0;
  keep[5] = 0;
  m->set_prune_mask(keep);
  m->save_file(dir.file("p.pt"));
  auto loaded = load_model(dir.file("p.pt"));
  loaded->eval();
  EXPECT_TRUE(torch::equal(loaded->prune_mask(), keep));
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::equal(loaded->logits(image_batch()), m->logits(image_batch())));
}

TEST(ModelsSave, LoadErrors) {
  TempDir dir;
  auto msg = error_of([&] { load_model(dir.file("absent.pt")); });
  EXPECT_TRUE(contains(msg, dir.file("absent.pt"))) << msg;

  auto m = build(kCases[0]);
  m->save_file(dir.file("cnn.pt"));
  auto wrong_classes = image_spec(5);
  msg = error_of([&] { load_model(dir.file("cnn.pt"), &wrong_classes); });
  EXPECT_TRUE(contains(msg, "3")) << msg;
  EXPECT_TRUE(contains(msg, "5")) << msg;
  auto text = text_spec();
  msg = error_of([&] { load_model(dir.file("cnn.pt"), &text); });
  EXPECT_TRUE(contains(msg, "text")) << msg;

  // Garbage weights next to valid metadata: a clear error, not a crash.
  fs::copy_file(dir.file("cnn.pt.yaml"), dir.file("junk.pt.yaml"));
  std::ofstream(dir.file("junk.pt")) << "not a torch archive";
  msg = error_of([&] { load_model(dir.file("junk.pt")); });
  EXPECT_TRUE(contains(msg, dir.file("junk.pt"))) << msg;
}

TEST(ModelsPrune, MaskZeroesChannels) {
  torch::NoGradGuard ng;
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.arch);
    auto m = build(c);
    m->eval();
    auto x = input_for(c);
    auto full = m->forward_full(x, true).activations.back().clone();
    auto keep = torch::ones({c.prunable});
    keep[0] = 0;
    keep[2] = 0;
    m->set_prune_mask(keep);
    auto pruned = m->forward_full(x, true).activations.back();
    // Channel axis: 1 for image maps and textcnn features, last for transformer states.
    int64_t axis = c.arch == "transformer" ? -1 : 1;
    EXPECT_EQ(pruned.select(axis, 0).abs().max().item<float>(), 0.0f);
    EXPECT_EQ(pruned.select(axis, 2).abs().max().item<float>(), 0.0f);
    EXPECT_TRUE(torch::equal(pruned.select(axis, 1), full.select(axis, 1)));
    EXPECT_GT(full.select(axis, 0).abs().max().item<float>(), 0.0f) << "channel 0 was zero before pruning";
    // Restoring the mask restores the outputs.
    m->set_prune_mask(torch::ones({c.prunable}));
    EXPECT_TRUE(torch::equal(m->forward_full(x, true).activations.back(), full));
  }
  auto m = build(kCases[0]);
  auto msg = error_of([&] { m->set_prune_mask(torch::ones({7})); });
  EXPECT_TRUE(contains(msg, "7")) << msg;
  EXPECT_TRUE(contains(msg, "8")) << msg;
}

// Fine-pruning runs the part before the mask once and the rest at every step: the two
// halves must give logits(x) exactly, with and without pruned channels, and the
// activation-keeping pass must give the same logits too.
TEST(ModelsPrune, ForwardSplitAtTheMaskIsExact) {
  torch::NoGradGuard ng;
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.arch);
    auto m = build(c);
    m->eval();
    auto x = input_for(c);
    for (int pruned = 0; pruned < 2; ++pruned) {
      auto keep = torch::ones({c.prunable});
      if (pruned) keep[1] = 0;
      m->set_prune_mask(keep);
      auto whole = m->logits(x);
      EXPECT_TRUE(torch::equal(m->logits_after_prune_mask(m->before_prune_mask(x), x), whole));
      EXPECT_TRUE(torch::allclose(m->forward_full(x, true).logits, whole, 1e-6, 1e-7));
    }
    // The part before the mask does not depend on it.
    auto before = m->before_prune_mask(x);
    m->set_prune_mask(torch::ones({c.prunable}));
    EXPECT_TRUE(torch::equal(m->before_prune_mask(x), before));
  }
}

TEST(ModelsFit, WrongClassesAndModality) {
  auto cnn = build(kCases[0]);  // 3 classes, 1×8×8
  auto msg = error_of([&] { check_model_fits(*cnn, image_spec(4), "model 'x.pt'"); });
  EXPECT_TRUE(contains(msg, "model 'x.pt'")) << msg;
  EXPECT_TRUE(contains(msg, "3")) << msg;
  EXPECT_TRUE(contains(msg, "4")) << msg;
  msg = error_of([&] { check_model_fits(*cnn, text_spec(), "model 'x.pt'"); });
  EXPECT_TRUE(contains(msg, "model 'x.pt'")) << msg;
  msg = error_of([&] { check_model_fits(*cnn, image_spec(3, 1, 28), "model 'x.pt'"); });
  EXPECT_TRUE(contains(msg, "model 'x.pt'")) << msg;
  msg = error_of([&] { check_model_fits(*cnn, image_spec(3, 3, 8), "model 'x.pt'"); });
  EXPECT_TRUE(contains(msg, "model 'x.pt'")) << msg;

  auto tr = build(kCases[2]);
  msg = error_of([&] { check_model_fits(*tr, image_spec(), "model 't.pt'"); });
  EXPECT_TRUE(contains(msg, "model 't.pt'")) << msg;
  msg = error_of([&] { check_model_fits(*tr, text_spec(2), "model 't.pt'"); });
  EXPECT_TRUE(contains(msg, "2")) << msg;
}

TEST(ModelsMake, OptionAndArchErrors) {
  auto msg = error_of([] { make_model("cnn", image_spec(), YAML::Load("{width: 4, depth: 3}")); });
  EXPECT_TRUE(contains(msg, "'depth'")) << msg;
  EXPECT_TRUE(contains(msg, "model")) << msg;
  msg = error_of([] { make_model("transformer", text_spec(), YAML::Load("{dim: 8, heads: 2, lyrs: 1}"), "mine"); });
  EXPECT_TRUE(contains(msg, "'lyrs'")) << msg;
  EXPECT_TRUE(contains(msg, "mine")) << msg;
  msg = error_of([] { make_model("resnet50", image_spec(), YAML::Node()); });
  EXPECT_TRUE(contains(msg, "resnet50")) << msg;
  msg = error_of([] { make_model("transformer", image_spec(), YAML::Node()); });
  EXPECT_TRUE(contains(msg, "text")) << msg;
  msg = error_of([] { make_model("cnn", text_spec(), YAML::Node()); });
  EXPECT_TRUE(contains(msg, "image")) << msg;
  msg = error_of([] { make_model("transformer", text_spec(), YAML::Load("{dim: 10, heads: 4}")); });
  EXPECT_TRUE(contains(msg, "10")) << msg;
  msg = error_of([] { make_model("cnn", image_spec(), YAML::Load("{width: wide}")); });
  EXPECT_TRUE(contains(msg, "width")) << msg;
  msg = error_of([] { make_model("textcnn", text_spec(), YAML::Load("{kernels: [7]}")); });  // max_len 6
  EXPECT_TRUE(contains(msg, "7")) << msg;
  // Defaults need no options at all.
  EXPECT_NO_THROW(make_model("cnn", image_spec(), YAML::Node()));
  EXPECT_EQ(default_arch(Modality::Image), "cnn");
  EXPECT_EQ(default_arch(Modality::Text), "transformer");
}

// The Transformer starts from small embeddings (std 0.02, padding row zero): with the
// N(0, 1) default a from-scratch model under-fits (text_models.cpp says why).
TEST(ModelsInit, TransformerEmbeddingsAreSmall) {
  InputSpec in = text_spec();
  in.vocab_size = 2000;
  in.max_len = 64;
  torch::manual_seed(1);
  auto m = make_model("transformer", in, YAML::Node());
  auto params = m->named_parameters();
  auto tok = params["tok.weight"], pos = params["pos.weight"];
  EXPECT_NEAR(tok.std().item<double>(), 0.02, 0.002);
  EXPECT_NEAR(pos.std().item<double>(), 0.02, 0.004);
  EXPECT_EQ(tok[Vocab::kPad].abs().sum().item<double>(), 0.0);
  auto custom = make_model("transformer", in, YAML::Load("{embed_init_std: 0.5}"));
  EXPECT_NEAR(custom->named_parameters()["tok.weight"].std().item<double>(), 0.5, 0.05);
  auto msg = error_of([&] { make_model("transformer", in, YAML::Load("{embed_init_std: 0}")); });
  EXPECT_TRUE(contains(msg, "embed_init_std")) << msg;
}

// The head reads the [CLS] state (pool: cls) or the mean of the non-padding token
// states (pool: mean, the default): logits recomputed from the returned features and
// the head's own weights.
TEST(ModelsInit, TransformerPooling) {
  InputSpec in = text_spec();
  const int64_t C = Vocab::kCls, P = Vocab::kPad;
  auto ids = torch::tensor(std::vector<int64_t>{C, 5, 7, P, P, P, C, 9, 4, 11, 12, P}).view({2, 6});
  for (std::string pool : {"mean", "cls"}) {
    torch::manual_seed(2);
    auto m = make_model("transformer", in, YAML::Load("{pool: " + pool + "}"));
    m->eval();
    auto out = m->forward(ids);
    auto params = m->named_parameters();
    auto w = params["head.weight"], b = params["head.bias"];
    torch::Tensor pooled;
    if (pool == "cls") {
      pooled = out.features.select(1, 0);
    } else {
      auto keep = ids.ne(Vocab::kPad).to(torch::kFloat).unsqueeze(-1);
      pooled = (out.features * keep).sum(1) / keep.sum(1);
    }
    auto expected = torch::matmul(pooled, w.t()) + b;
    EXPECT_TRUE(torch::allclose(out.logits, expected, 1e-5, 1e-6)) << pool;
  }
  auto msg = error_of([&] { make_model("transformer", in, YAML::Load("{pool: max}")); });
  EXPECT_TRUE(contains(msg, "pool")) << msg;
}

TEST(ModelsSpec, InputSpecYamlAndExample) {
  auto t = text_spec(4);
  auto back = InputSpec::from_yaml(t.to_yaml());
  EXPECT_EQ(back.modality, Modality::Text);
  EXPECT_EQ(back.vocab_size, 20);
  EXPECT_EQ(back.max_len, 6);
  EXPECT_EQ(back.num_classes, 4);
  auto ex = t.example(3);
  EXPECT_EQ(shape(ex), (std::vector<int64_t>{3, 6}));
  EXPECT_EQ(ex[1][0].item<int64_t>(), Vocab::kCls);
  EXPECT_EQ(ex[1][1].item<int64_t>(), Vocab::kPad);
  auto i = image_spec(10, 3, 32);
  auto ib = InputSpec::from_yaml(i.to_yaml());
  EXPECT_EQ(ib.modality, Modality::Image);
  EXPECT_EQ(ib.channels, 3);
  EXPECT_EQ(ib.height, 32);
  EXPECT_EQ(shape(i.example(2)), (std::vector<int64_t>{2, 3, 32, 32}));
  // cnn width 4 hidden 16, 3 classes on 1×8×8:
  // conv1 1·4·9 + 4 = 40; conv2 4·8·9 + 8 = 296; fc1 8·2·2·16 + 16 = 528; fc2 16·3 + 3 = 51 -> 915.
  EXPECT_EQ(count_parameters(*build(kCases[0])), 915);
}

TEST(ModelsStateDict, PythonTorchLoadsIt) {
  const char* py = "/usr/bin/python3";
  if (!fs::exists(py) || std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "Debian's python3 with torch is not available";
  TempDir dir;
  auto m = build(kCases[0]);
  auto path = dir.file("cnn.state_dict.pt");
  save_state_dict(*m, path);
  auto script = dir.file("check.py");
  std::ofstream(script) << "import sys, torch\n"
                           "d = torch.load(sys.argv[1])\n"
                           "assert isinstance(d, dict), type(d)\n"
                           "for k in sorted(d):\n"
                           "    assert isinstance(d[k], torch.Tensor), k\n"
                           "    print(k, list(d[k].shape), '%.6f' % float(d[k].double().sum()))\n";
  auto out = dir.file("out.txt");
  int rc = std::system(fmt::format("{} {} {} > {} 2>&1", py, script, path, out).c_str());
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  ASSERT_EQ(rc, 0) << ss.str();
  // cnn width 4, hidden 16, 3 classes, 1×8×8: parameter names and shapes by hand.
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected{
      {"conv1.bias", {4}},   {"conv1.weight", {4, 1, 3, 3}}, {"conv2.bias", {8}},      {"conv2.weight", {8, 4, 3, 3}},
      {"fc1.bias", {16}},    {"fc1.weight", {16, 32}},        {"fc2.bias", {3}},         {"fc2.weight", {3, 16}},
      {"prune_mask", {8}},
  };
  std::vector<std::string> lines;
  for (std::string line; std::getline(ss, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), expected.size()) << ss.str();
  auto params = m->named_parameters();
  for (size_t i = 0; i < expected.size(); ++i) {
    std::string dims;
    for (size_t j = 0; j < expected[i].second.size(); ++j)
      dims += (j ? ", " : "") + std::to_string(expected[i].second[j]);
    auto prefix = expected[i].first + " [" + dims + "] ";
    EXPECT_EQ(lines[i].rfind(prefix, 0), 0u) << "expected '" << prefix << "…', got '" << lines[i] << "'";
    // The values match too (sum of each tensor, to 6 decimals).
    double sum = expected[i].first == "prune_mask" ? 8.0 : params[expected[i].first].to(torch::kFloat64).sum().item<double>();
    EXPECT_NEAR(std::stod(lines[i].substr(prefix.size())), sum, 1e-5) << lines[i];
  }
}
