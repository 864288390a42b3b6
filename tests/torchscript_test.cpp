// TorchScript import: modules built here with torch::jit (the same
// format Python's torch.jit.script writes) load through load_model, expose their
// parameters under the Python names, train in C++, clone deeply, save back as
// TorchScript, and fail clearly when they do not fit the data. The Python round trip
// (train in PyTorch, purify with bedkd/ntml, torch.jit.load the result) is
// tests/torchscript_roundtrip_test.sh.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <unistd.h>

#include <filesystem>

#include "antidote/defenses/defense.hpp"
#include "antidote/models/model.hpp"

using namespace antidote;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / fmt::format("antidote_ts_{}_{}", name, ::getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

InputSpec image_spec(int64_t classes = 3) {
  InputSpec in;
  in.channels = 1;
  in.height = 4;
  in.width = 4;
  in.num_classes = classes;
  return in;
}

torch::jit::Module linear(const std::string& name, int64_t in, int64_t out) {
  torch::jit::Module m(name);
  m.register_attribute("training", c10::BoolType::get(), true);
  m.register_parameter("weight", torch::randn({out, in}) * 0.3, false);
  m.register_parameter("bias", torch::zeros({out}), false);
  m.define(R"(
def forward(self, x):
    return torch.linear(x, self.weight, self.bias)
)");
  return m;
}

// An image model [B, 1, 4, 4] -> 3 classes. `style`: "method" (forward -> logits and
// an exported features(x)), "tuple" (forward -> (logits, features)), "none" (logits only).
torch::jit::Module image_module(const std::string& style, int64_t classes = 3) {
  torch::manual_seed(1);
  torch::jit::Module m("Net");
  m.register_module("body", linear("Body", 16, 8));
  m.register_module("head", linear("Head", 8, classes));
  m.register_buffer("scale", torch::ones({1}));
  m.register_attribute("training", c10::BoolType::get(), true);
  if (style == "method") {
    m.define(R"(
def features(self, x):
    return torch.relu(self.body.forward(x.flatten(1) * self.scale))
def forward(self, x):
    return self.head.forward(self.features(x))
)");
  } else if (style == "tuple") {
    m.define(R"(
def forward(self, x):
    f = torch.relu(self.body.forward(x.flatten(1) * self.scale))
    return (self.head.forward(f), f)
)");
  } else {
    m.define(R"(
def forward(self, x):
    return self.head.forward(torch.relu(self.body.forward(x.flatten(1))))
)");
  }
  return m;
}

std::string save_module(torch::jit::Module m, const fs::path& dir, const std::string& name) {
  auto path = (dir / name).string();
  m.save(path);
  return path;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(TorchScript, LoadsBothContractsWithPythonParameterNames) {
  auto dir = temp_dir("load");
  auto spec = image_spec();
  for (std::string style : {"method", "tuple"}) {
    auto path = save_module(image_module(style), dir, style + ".pt");
    auto model = load_model(path, &spec);
    EXPECT_EQ(model->spec.arch, "torchscript");
    EXPECT_EQ(model->spec.input.num_classes, 3);
    std::vector<std::string> names;
    for (const auto& p : model->named_parameters(true)) names.push_back(p.key());
    EXPECT_EQ(names, (std::vector<std::string>{"body.weight", "body.bias", "head.weight", "head.bias"})) << style;
    EXPECT_TRUE(model->named_buffers(true).find("scale"));
    for (const auto& p : model->parameters()) EXPECT_TRUE(p.requires_grad());
    auto x = torch::rand({5, 1, 4, 4});
    auto out = model->forward_full(x, true);
    EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{5, 3}));
    EXPECT_EQ(out.features.sizes(), (std::vector<int64_t>{5, 8}));
    ASSERT_EQ(out.activations.size(), 1u);
    EXPECT_TRUE(out.activations[0].equal(out.features));
    EXPECT_EQ(model->prunable_channels(), 0);
  }
  fs::remove_all(dir);
}

TEST(TorchScript, OptimizerTrainsTheJitModule) {
  auto dir = temp_dir("train");
  auto spec = image_spec();
  auto model = load_model(save_module(image_module("method"), dir, "m.pt"), &spec);
  torch::manual_seed(0);
  auto x = torch::rand({32, 1, 4, 4});
  auto y = torch::randint(0, 3, {32}, torch::kLong);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.5));
  model->train();
  double first = 0, last = 0;
  for (int i = 0; i < 60; ++i) {
    opt.zero_grad();
    auto loss = torch::cross_entropy_loss(model->logits(x), y);
    loss.backward();
    opt.step();
    if (i == 0) first = loss.item<double>();
    last = loss.item<double>();
  }
  EXPECT_LT(last, 0.8 * first);
  // The trained weights are what gets saved.
  auto saved = (dir / "trained.pt").string();
  model->eval();
  model->save_file(saved);
  auto back = load_model(saved, &spec);
  torch::NoGradGuard ng;
  EXPECT_TRUE(back->logits(x).allclose(model->logits(x)));
  fs::remove_all(dir);
}

TEST(TorchScript, TrainModeReachesTheScript) {
  auto dir = temp_dir("mode");
  torch::jit::Module m("Net");
  m.register_parameter("w", torch::ones({3, 16}), false);
  m.register_attribute("training", c10::BoolType::get(), true);
  m.define(R"(
def forward(self, x):
    f = x.flatten(1)
    z = torch.linear(f, self.w)
    if self.training:
        z = z + 100.0
    return (z, f)
)");
  auto spec = image_spec();
  auto model = load_model(save_module(m, dir, "m.pt"), &spec);
  auto x = torch::zeros({1, 1, 4, 4});
  model->train();
  EXPECT_EQ(model->logits(x)[0][0].item<float>(), 100.0f);
  model->eval();
  EXPECT_FALSE(model->is_training());
  EXPECT_EQ(model->logits(x)[0][0].item<float>(), 0.0f);
  auto copy = model->clone_deep();
  EXPECT_FALSE(copy->is_training());
  EXPECT_EQ(copy->logits(x)[0][0].item<float>(), 0.0f);
  fs::remove_all(dir);
}

TEST(TorchScript, CloneDeepIsIndependent) {
  auto dir = temp_dir("clone");
  auto spec = image_spec();
  auto model = load_model(save_module(image_module("tuple"), dir, "m.pt"), &spec);
  freeze(*model);
  auto copy = model->clone_deep();
  EXPECT_EQ(copy->spec.arch, "torchscript");
  auto x = torch::rand({4, 1, 4, 4});
  torch::Tensor before;
  {
    torch::NoGradGuard ng;
    before = model->logits(x).clone();
    for (auto& p : copy->parameters()) p.add_(1.0);
  }
  for (const auto& p : copy->parameters()) {
    EXPECT_TRUE(p.is_leaf());
    EXPECT_TRUE(p.requires_grad());
  }
  torch::NoGradGuard ng;
  EXPECT_TRUE(model->logits(x).equal(before));
  EXPECT_FALSE(copy->logits(x).equal(before));
  fs::remove_all(dir);
}

TEST(TorchScript, SavesTorchScriptAtomicallyWithItsInputSpec) {
  auto dir = temp_dir("save");
  auto spec = image_spec();
  auto model = load_model(save_module(image_module("method"), dir, "m.pt"), &spec);
  auto out = (dir / "out.pt").string();
  model->save_file(out);
  EXPECT_FALSE(fs::exists(out + ".tmp"));
  EXPECT_FALSE(fs::exists(out + ".yaml"));  // not an antidote-format model
  auto raw = torch::jit::load(out);         // plain TorchScript
  EXPECT_FALSE(raw.is_training());
  EXPECT_TRUE(raw.find_method("features").has_value());
  auto back = load_model(out);  // no expected spec: the saved one comes back
  EXPECT_EQ(back->spec.input.num_classes, 3);
  EXPECT_EQ(back->spec.input.height, 4);
  fs::remove_all(dir);
}

TEST(TorchScript, MisfitsFailBeforeTraining) {
  auto dir = temp_dir("misfit");
  auto spec = image_spec();
  auto no_features = save_module(image_module("none"), dir, "nofeat.pt");
  EXPECT_NE(error_of([&] { load_model(no_features, &spec); }).find("no features"), std::string::npos);
  auto five = save_module(image_module("method", 5), dir, "five.pt");
  EXPECT_NE(error_of([&] { load_model(five, &spec); }).find("predicts 5 classes, the data has 3"), std::string::npos);
  auto big = image_spec();
  big.height = big.width = 8;
  auto ok = save_module(image_module("method"), dir, "ok.pt");
  EXPECT_NE(error_of([&] { load_model(ok, &big); }).find("does not accept the data's input"), std::string::npos);
  auto junk = (dir / "junk.pt").string();
  write_file_atomic(junk, "not a model");
  EXPECT_NE(error_of([&] { load_model(junk); }).find("nor a TorchScript file"), std::string::npos);
  InputSpec text;
  text.modality = Modality::Text;
  text.vocab_size = 10;
  text.max_len = 6;
  text.num_classes = 3;
  EXPECT_NE(error_of([&] { load_model(ok, &text); }).find("needs its vocabulary"), std::string::npos);
  // A text model (it has a vocabulary) on image data.
  write_file_atomic(ok + ".vocab", "[PAD]\n[UNK]\n[CLS]\n");
  auto tiny = image_spec();
  EXPECT_NE(error_of([&] { load_model(ok, &tiny); }).find("takes text input (it has a vocabulary"),
            std::string::npos);
  fs::remove_all(dir);
}

TEST(TorchScript, TextModelsCarryMaxLenAndVocabulary) {
  auto dir = temp_dir("text");
  torch::manual_seed(2);
  auto make = [&](bool with_max_len, int64_t vocab) {
    torch::jit::Module m("TextNet");
    m.register_attribute("training", c10::BoolType::get(), true);
    m.register_parameter("emb", torch::randn({vocab, 4}), false);
    m.register_module("head", linear("Head", 4, 2));
    if (with_max_len) m.register_attribute("max_len", c10::IntType::get(), 6);
    m.define(R"(
def forward(self, ids):
    f = torch.embedding(self.emb, ids).mean(1)
    return (self.head.forward(f), f)
)");
    return m;
  };
  InputSpec text;
  text.modality = Modality::Text;
  text.vocab_size = 5;
  text.max_len = 6;
  text.num_classes = 2;
  auto path = save_module(make(true, 5), dir, "text.pt");
  EXPECT_NE(error_of([&] { load_model(path, &text); }).find("needs its vocabulary"), std::string::npos);
  write_file_atomic(path + ".vocab", "[PAD]\n[UNK]\n[CLS]\ngood\nbad\n");
  auto model = load_model(path);  // as the CLI does first: spec from the module and the vocabulary
  EXPECT_EQ(model->spec.input.modality, Modality::Text);
  EXPECT_EQ(model->spec.input.max_len, 6);
  EXPECT_EQ(model->spec.input.vocab_size, 5);
  model = load_model(path, &text);
  EXPECT_EQ(model->logits(text.example(3)).sizes(), (std::vector<int64_t>{3, 2}));
  auto other = text;
  other.max_len = 9;
  EXPECT_NE(error_of([&] { load_model(path, &other); }).find("max_len 6"), std::string::npos);

  auto no_len = save_module(make(false, 5), dir, "nolen.pt");
  write_file_atomic(no_len + ".vocab", "[PAD]\n[UNK]\n[CLS]\ngood\nbad\n");
  EXPECT_NE(error_of([&] { load_model(no_len); }).find("self.max_len"), std::string::npos);

  auto small = save_module(make(true, 3), dir, "small.pt");  // embedding smaller than the vocabulary
  write_file_atomic(small + ".vocab", "[PAD]\n[UNK]\n[CLS]\ngood\nbad\n");
  EXPECT_NE(error_of([&] { load_model(small, &text); }).find("token ids up to 4"), std::string::npos);
  fs::remove_all(dir);
}

TEST(TorchScript, PruneMaskIsRejectedClearly) {
  auto dir = temp_dir("prune");
  auto spec = image_spec();
  auto model = load_model(save_module(image_module("method"), dir, "m.pt"), &spec);
  EXPECT_EQ(model->prunable_channels(), 0);
  EXPECT_NE(error_of([&] { model->set_prune_mask(torch::ones({8})); }).find("0 prunable channels"),
            std::string::npos);
  fs::remove_all(dir);
}
