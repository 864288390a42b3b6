#include "antidote/defenses/defense.hpp"

namespace antidote {

DefensePtr make_defense(const std::string& name, Params& params, const DefenseSetup& setup) {
  return DefenseRegistry::instance().create("defense", name, params, setup);
}

ClassifierPtr trainable_copy(const Classifier& model) {
  auto copy = model.clone_deep();
  copy->train();
  for (auto& p : copy->parameters()) p.set_requires_grad(true);
  return copy;
}

void record_trajectory(DefenseContext& ctx, Classifier& model, int64_t at, nlohmann::json& trajectory) {
  if (!ctx.monitor) return;
  const auto e = ctx.monitor(model);
  trajectory.push_back({{"epoch", at}, {"cacc", e.cacc}, {"asr", e.asr}, {"ra", e.ra}, {"pcc", e.pcc}});
}

void freeze(Classifier& model) {
  model.eval();
  for (auto& p : model.parameters()) p.set_requires_grad(false);
}

namespace {
// The suspect model as is: the row every defense is compared against.
struct NoDefense : Defense {
  DefenseResult run(const ClassifierPtr& suspect, DefenseContext&) override {
    DefenseResult r;
    r.model = suspect;
    return r;
  }
};
Registrar<DefenseRegistry> reg_none(
    "none", [](Params&, const DefenseSetup&) { return std::make_shared<NoDefense>(); }, "the suspect model as is",
    [] { return OptionDocs{}; });
}  // namespace

}  // namespace antidote
