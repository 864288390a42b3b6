// TorchScript import: modules built here with torch::jit (the same
// format Python's torch.jit.script writes) load through load_model, expose their
// parameters under the Python names, train in C++, clone deeply, save back as
// TorchScript, and fail clearly when they do not fit the data; BERT-style text modules
// get the attention mask and token types, in their vocabulary's ids. The Python round
// trips (train in PyTorch, purify with bedkd/ntml, torch.jit.load the result) are
// tests/torchscript_roundtrip_test.sh and, for a BERT-style model, tests/bert_roundtrip_test.sh.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <unistd.h>

#include <filesystem>

#include "antidote/data/wordpiece.hpp"
#include "antidote/defenses/defense.hpp"
#include "antidote/models/model.hpp"
#include "antidote/pipeline/experiment.hpp"

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

namespace {

// A BERT-style text module: forward(input_ids, attention_mask[, token_type_ids]) ->
// (logits, features [B, L, 3]) where the features hold what the module was given (the
// ids, the mask and the token types), so that a test can read them back.
torch::jit::Module bert_style(int64_t inputs, int64_t vocab) {
  torch::jit::Module m("Bert");
  m.register_attribute("training", c10::BoolType::get(), true);
  m.register_parameter("emb", torch::randn({vocab, 4}), false);
  m.register_module("classifier", linear("Head", 4, 2));
  m.register_buffer("max_len", torch::tensor(6, torch::kLong));  // what torch.jit.trace keeps
  const std::string body = R"(
    e = torch.embedding(self.emb, input_ids)
    m = attention_mask.unsqueeze(-1).to(e.dtype)
    pooled = (e * m).sum(1) / m.sum(1)
    seen = torch.stack([input_ids, attention_mask, types], -1).to(e.dtype)
    return (self.classifier.forward(pooled), seen + 0.0 * e.sum(-1, keepdim=True))
)";
  if (inputs == 3) {
    m.define("def forward(self, input_ids, attention_mask, token_type_ids):\n    types = token_type_ids" + body);
  } else if (inputs == 2) {
    m.define("def forward(self, input_ids, attention_mask):\n    types = torch.full_like(input_ids, 7)" + body);
  } else {
    m.define("def forward(self, input_ids, attention_mask, token_type_ids, position_ids):\n    types = position_ids" +
             body);
  }
  return m;
}

}  // namespace

TEST(TorchScript, BertStyleModulesGetAttentionMaskAndTokenTypes) {
  auto dir = temp_dir("bert");
  torch::manual_seed(3);
  // A WordPiece vocabulary whose [PAD] is not id 0: the data's ids put it at 0, the
  // module sees its own.
  const std::string vocab = "the\n##s\n[CLS]\n[PAD]\n[UNK]\n[SEP]\nfilm\n";  // [PAD] 3, [CLS] 2, [SEP] 5
  InputSpec text;
  text.modality = Modality::Text;
  text.vocab_size = 7;
  text.max_len = 6;
  text.num_classes = 2;
  Encoder enc;
  enc.modality = Modality::Text;
  enc.vocab = read_tokenizer([&] {
    auto p = (dir / "enc.vocab").string();
    write_file_atomic(p, vocab);
    return p;
  }());
  enc.max_len = 6;
  RawSplit split;
  split.texts = {"The films", "film"};
  split.labels = torch::tensor({0, 1}, torch::kLong);
  auto x = enc.encode(split).x;
  // The vocabulary's ids: [CLS] the film ##s [SEP] [PAD] = 2 0 6 1 5 3, and [CLS] film [SEP]
  // then [PAD] = 2 6 5 3 3 3; the data's have 0 and 3 swapped.
  EXPECT_TRUE(x.equal(torch::tensor({{2, 3, 6, 1, 5, 0}, {2, 6, 5, 0, 0, 0}}, torch::kLong))) << x;

  for (int64_t inputs : {2, 3}) {
    auto path = save_module(bert_style(inputs, 7), dir, fmt::format("bert{}.pt", inputs));
    write_file_atomic(path + ".vocab", vocab);
    auto model = load_model(path);  // spec from the module (max_len buffer) and the vocabulary
    EXPECT_EQ(model->spec.input.max_len, 6);
    EXPECT_EQ(model->spec.input.vocab_size, 7);
    model = load_model(path, &text);
    EXPECT_FALSE(model->cuttable_lengths(x).defined());  // rows are never cut for an imported graph
    auto seen = model->forward_full(x, false).features;
    EXPECT_EQ(seen.sizes(), (std::vector<int64_t>{2, 6, 3}));
    EXPECT_TRUE(seen.select(2, 0)
                    .to(torch::kLong)
                    .equal(torch::tensor({{2, 0, 6, 1, 5, 3}, {2, 6, 5, 3, 3, 3}}, torch::kLong)));
    EXPECT_TRUE(seen.select(2, 1)
                    .to(torch::kLong)
                    .equal(torch::tensor({{1, 1, 1, 1, 1, 0}, {1, 1, 1, 0, 0, 0}}, torch::kLong)));
    EXPECT_TRUE(seen.select(2, 2).eq(inputs == 3 ? 0 : 7).all().item<bool>()) << inputs;
    // Deep copies keep the vocabulary's [PAD].
    auto copy = model->clone_deep();
    EXPECT_TRUE(copy->forward_full(x, false).features.equal(seen));
  }
  // A fourth input without a default cannot be supplied.
  auto four = save_module(bert_style(4, 7), dir, "bert4.pt");
  write_file_atomic(four + ".vocab", vocab);
  EXPECT_NE(error_of([&] { load_model(four, &text); }).find("argument 'position_ids' without a default"),
            std::string::npos);
  fs::remove_all(dir);
}

TEST(TorchScript, MaxLenMustBeAnInteger) {
  auto dir = temp_dir("maxlen");
  torch::jit::Module m("TextNet");
  m.register_attribute("training", c10::BoolType::get(), true);
  m.register_parameter("emb", torch::randn({5, 4}), false);
  m.register_buffer("max_len", torch::tensor(6.0));
  m.define(R"(
def forward(self, ids):
    f = torch.embedding(self.emb, ids).mean(1)
    return (f[:, :2], f)
)");
  auto path = save_module(m, dir, "float.pt");
  write_file_atomic(path + ".vocab", "[PAD]\n[UNK]\n[CLS]\ngood\nbad\n");
  EXPECT_NE(error_of([&] { load_model(path); }).find("max_len must be an int attribute"), std::string::npos);
  fs::remove_all(dir);
}
