// `antidote bench` and `antidote demo`: a grid of datasets × attacks × defenses × seeds,
// from the user's config (bench) or from the embedded demo config (demo).
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

#include "antidote/cli/cli.hpp"
#include "antidote/report/results.hpp"

namespace antidote::cli {

namespace {

struct BenchArgs {
  Common common;
  std::string out;
  bool fresh = false;
  std::string shard;  // "i/N", 1 <= i <= N
  bool merge = false;
  bool print_config = false;  // demo only
};

// "2/4" -> shard 1 (0-based) of 4.
std::pair<int, int> parse_shard(const std::string& text) {
  int i = 0, n = 0;
  char slash = 0, extra = 0;
  if (std::sscanf(text.c_str(), "%d %c %d %c", &i, &slash, &n, &extra) != 3 || slash != '/' || n < 1 || i < 1 || i > n)
    fail("--shard: '{}' is not i/N with 1 <= i <= N (e.g. 2/4)", text);
  return {i - 1, n};
}

int cmd_bench(const Common& c, const BenchArgs& a) {
  auto cfg = load_common(c);
  BenchOptions o;
  o.out_dir = a.out;
  o.fresh = a.fresh;
  o.merge = a.merge;
  if (!a.shard.empty()) std::tie(o.shard, o.shards) = parse_shard(a.shard);
  auto doc = run_bench(cfg, o);
  std::cout << results_markdown(doc);
  if (o.shards > 1) {
    std::cout << fmt::format(
        "\nshard {}/{}: {} cell(s) under {}/cells; when every shard has finished, `antidote bench --merge` with the "
        "same config and --out writes the results\n",
        o.shard + 1, o.shards, doc["runs"].size(), a.out);
    return 0;
  }
  std::cout << fmt::format("\nwrote {0}/results.json, {0}/results.csv, {0}/results.md, {0}/report.html\n", a.out);
  return 0;
}

}  // namespace

Subcommand add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* bench = app.add_subcommand("bench", "run a grid of datasets × attacks × defenses × seeds");
  add_common(bench, a->common, true);
  bench->add_option("-o,--out", a->out, "output directory")->required();
  bench->add_flag("--fresh", a->fresh, "redo finished cells instead of resuming");
  bench->add_option("--shard", a->shard,
                    "i/N: run the i-th of N shares of the grid's suspects (with their defenses) into a shared --out, "
                    "e.g. one per task of a job array; writes cells, not results");
  bench->add_flag("--merge", a->merge, "assemble the shards' cells into the results; an unfinished cell is an error");
  return {bench, [a] { return cmd_bench(a->common, *a); }};
}

Subcommand add_demo(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* demo = app.add_subcommand("demo", "the embedded default: Fashion-MNIST, BadNets 10 %, small CNN, all defenses");
  demo->add_option("-o,--out", a->out, "output directory")->default_val("antidote-demo");
  demo->add_option("--threads", a->common.threads, "intra-op threads (default: all cores)");
  demo->add_flag("--fresh", a->fresh, "redo finished cells instead of resuming");
  demo->add_flag("-q,--quiet", a->common.quiet, "no progress lines");
  demo->add_flag("--print-config", a->print_config, "print the embedded config and exit");
  return {demo, [a] {
            a->common.demo = true;
            if (a->print_config) {
              std::cout << demo_config();
              return 0;
            }
            return cmd_bench(a->common, *a);
          }};
}

}  // namespace antidote::cli
