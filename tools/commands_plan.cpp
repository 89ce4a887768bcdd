// flexinfer plan: where a model's bytes would live under memory budgets, and the predicted speed.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/engine/placement.h"
#include "host/engine/system_memory.h"
#include "host/kernels/thread_pool.h"
#include "host/model/model.h"
#include "io/error.h"
#include "planner/budget.h"
#include "planner/profile.h"
#include "tools/cli.h"
#include "tools/command_support.h"
#include "tools/commands.h"

namespace fi {

namespace {

// plan with --gpu-mem: the three-tier placement, for this machine's cached profile or --profile.
struct PlanArgs {
  EngineArgs engine;
  std::string json;
};

std::optional<uint64_t> host_budget_of(const EngineArgs& engine) {
  if (engine.host_mem.word != "auto") return engine.host_mem.bytes;
  return available_host_memory(read_memory_limits()).bytes;
}

int plan_three_tiers(const PlanArgs& args, const Model& model, int threads) {
  const GgufFile& file = model.file();
  const ModelConfig& config = model.config();
  const auto profile = chosen_profile(args.engine.profile);
  if (!profile) fail("plan: --gpu-mem needs a profile with GPU measurements: run 'flexinfer probe' or pass --profile FILE");
  const TierPlan plan =
      make_tier_plan(tier_input(model, host_budget_of(args.engine), threads, *args.engine.gpu_mem.bytes), *profile);
  uint64_t weights = 0;
  for (const TierUnit& unit : plan.units) weights += unit.bytes();
  std::printf("model     %s (%lld layers, %s of weights)\n", file.path().c_str(), static_cast<long long>(config.n_layers),
              format_bytes(weights).c_str());
  std::printf("profile   %s\n", profile->machine.empty() ? profile->gpu.c_str() : profile->machine.c_str());
  auto show_tier = [](const char* name, std::optional<uint64_t> budget, uint64_t used, const std::vector<PlanCost>& costs,
                      uint64_t resident) {
    std::printf("\n%s: budget %s, used %s\n", name, budget ? format_bytes(*budget).c_str() : "none",
                format_bytes(used).c_str());
    for (const PlanCost& cost : costs) std::printf("  %-38s %12s\n", cost.what.c_str(), format_bytes(cost.bytes).c_str());
    std::printf("  %-38s %12s\n", "resident weights", format_bytes(resident).c_str());
  };
  uint64_t gpu_resident = 0, host_resident = 0;
  for (const TierUnit& unit : plan.units) {
    gpu_resident += unit.gpu_bytes();
    host_resident += unit.host_bytes();
  }
  show_tier("GPU", plan.gpu_budget, plan.gpu_used(), plan.gpu_costs, gpu_resident);
  show_tier("host memory", plan.host_budget, plan.host_used(), plan.host_costs, host_resident);

  std::printf("\n  %-8s %-7s %-7s %12s %12s %12s\n", "unit", "decode", "prefill", "gpu", "host", "disk");
  for (const TierUnit& unit : plan.units)
    std::printf("  %-8s %-7s %-7s %12s %12s %12s\n", unit.name.c_str(), device_name(unit.decode),
                device_name(unit.prefill), format_bytes(unit.gpu_bytes()).c_str(), format_bytes(unit.host_bytes()).c_str(),
                format_bytes(unit.disk_bytes()).c_str());
  std::printf("\nper token: %s read from disk, %s uploaded to the GPU, %s computed on the CPU, %s on the GPU\n",
              format_bytes(plan.disk_bytes_per_token()).c_str(), format_bytes(plan.upload_bytes_per_token()).c_str(),
              format_bytes(plan.cpu_bytes_per_token()).c_str(), format_bytes(plan.gpu_bytes_per_token()).c_str());
  std::printf("predicted decode: %.2f tok/s, bound by %s (per token: disk %.4f s, PCIe %.4f s, CPU %.4f s + GPU %.4f s)\n",
              plan.predicted_decode_tok_s, plan.bound.c_str(), plan.seconds.disk, plan.seconds.pcie, plan.seconds.cpu,
              plan.seconds.gpu);

  if (!args.json.empty()) {
    nlohmann::json layers = nlohmann::json::array();
    for (const TierUnit& unit : plan.units)
      layers.push_back({{"name", unit.name},
                        {"decode_device", device_name(unit.decode)},
                        {"prefill_device", device_name(unit.prefill)},
                        {"weight_bytes", {{"gpu", unit.gpu_bytes()}, {"host", unit.host_bytes()}, {"disk", unit.disk_bytes()}}},
                        {"kv_cache_bytes", unit.kv_bytes}});
    auto costs = [](const std::vector<PlanCost>& list) {
      nlohmann::json json = nlohmann::json::array();
      for (const PlanCost& cost : list) json.push_back({{"what", cost.what}, {"bytes", cost.bytes}});
      return json;
    };
    const nlohmann::json json = {
        {"model", file.path()},
        {"profile", profile->machine},
        {"gpu", {{"budget_bytes", plan.gpu_budget}, {"used_bytes", plan.gpu_used()}, {"fixed", costs(plan.gpu_costs)},
                 {"resident_weight_bytes", gpu_resident}}},
        {"host", {{"budget_bytes", plan.host_budget ? nlohmann::json(*plan.host_budget) : nlohmann::json(nullptr)},
                  {"used_bytes", plan.host_used()}, {"fixed", costs(plan.host_costs)},
                  {"resident_weight_bytes", host_resident}}},
        {"layers", layers},
        {"bytes_per_token", {{"disk", plan.disk_bytes_per_token()}, {"upload", plan.upload_bytes_per_token()},
                             {"host", plan.cpu_bytes_per_token()}, {"gpu", plan.gpu_bytes_per_token()}}},
        {"seconds_per_token", {{"disk", plan.seconds.disk}, {"pcie", plan.seconds.pcie}, {"cpu", plan.seconds.cpu},
                               {"gpu", plan.seconds.gpu}}},
        {"predicted_decode_tok_s", plan.predicted_decode_tok_s},
        {"bound", plan.bound},
    };
    write_json(args.json, json, "plan");
  }
  return 0;
}

}  // namespace

int command_plan(int argc, char** argv) {
  const auto app = command_app("plan", "Show where a model's bytes live under memory budgets, and the predicted speed.");
  PlanArgs args;
  args.engine.host_mem = {"none", std::nullopt};
  args.engine.gpu_mem = {"none", std::nullopt};
  app->add_option("-m,--model", args.engine.model, "GGUF model file")->type_name("FILE");
  size_option(*app, "--host-mem", args.engine.host_mem, {"auto", "none"},
              "host memory budget: a size, auto (what generate would choose) or none (the default: no limit)");
  size_option(*app, "--gpu-mem", args.engine.gpu_mem, {"none"}, "GPU memory budget: plan over GPU, host and disk");
  integer_option(*app, "-c,--ctx-size,--ctx", args.engine.context, 1, 1 << 24, "context length in tokens (default: min(4096, trained))");
  integer_option(*app, "-t,--threads", args.engine.threads, 1, 1024, "CPU threads (default: all cores)");
  app->add_option("--profile", args.engine.profile, "a probe profile to predict with (default: this machine's cached one)")
      ->type_name("FILE");
  app->add_option("--json", args.json, "also write the plan as JSON to this file")->type_name("FILE");
  if (!parse_command_line(*app, argc, argv, 2)) return 0;
  require_option(*app, "--model");
  ModelOptions options;
  options.context = args.engine.context;
  const auto model = Model::open(args.engine.model, options);
  const GgufFile& file = model->file();
  const ModelConfig& config = model->config();
  const int threads = args.engine.threads > 0 ? static_cast<int>(args.engine.threads) : default_thread_count();
  // With a GPU a mixture-of-experts model keeps attention there and its experts on the CPU: the
  // host plan covers the expert halves.
  if (args.engine.gpu_mem.bytes && config.has_experts()) {
    const GpuMemoryPlan whole = gpu_memory_plan(*model, GpuExperts::OnGpu);
    if (whole.total() <= *args.engine.gpu_mem.bytes) {
      std::printf("model     %s (%lld layers)\nexperts   %s\n", file.path().c_str(), static_cast<long long>(config.n_layers),
                  config.experts_description().c_str());
      std::printf("gpu       everything, every expert resident: %s of --gpu-mem %s (%s)\n", format_bytes(whole.total()).c_str(),
                  format_bytes(*args.engine.gpu_mem.bytes).c_str(), whole.describe().c_str());
      return 0;
    }
  }
  const bool experts_beside_gpu = args.engine.gpu_mem.bytes && config.has_experts();
  if (args.engine.gpu_mem.bytes && !experts_beside_gpu) return plan_three_tiers(args, *model, threads);
  const Plan plan = make_plan(host_plan_input(*model, host_budget_of(args.engine), threads,
                                              experts_beside_gpu ? HostPart::ExpertHalves : HostPart::Whole));

  std::printf("model     %s (%lld layers, %s of weights)\n", file.path().c_str(), static_cast<long long>(config.n_layers),
              format_bytes(plan.weight_bytes()).c_str());
  if (config.has_experts()) std::printf("experts   %s\n", config.experts_description().c_str());
  uint64_t gpu_used = 0;  // beside a GPU: its dense half and cache of experts
  if (experts_beside_gpu) {
    const GpuMemoryPlan gpu = gpu_memory_plan(*model, GpuExperts::OnCpu);
    std::printf("gpu       attention, embedding and head: %s of --gpu-mem %s (%s)%s\n", format_bytes(gpu.total()).c_str(),
                format_bytes(*args.engine.gpu_mem.bytes).c_str(), gpu.describe().c_str(),
                gpu.total() > *args.engine.gpu_mem.bytes ? ": does not fit" : "");
    const uint64_t budget = *args.engine.gpu_mem.bytes;
    const GpuExpertCachePlan vram = gpu_expert_cache_plan(*model, budget > gpu.total() ? budget - gpu.total() : 0);
    gpu_used = gpu.total() + vram.total();
    if (vram.slots > 0)
      std::printf("gpu       a cache of %lld of the %lld experts: %s (%s per expert, %s of upload staging and results)\n",
                  static_cast<long long>(vram.slots), static_cast<long long>(config.n_layers * config.n_experts),
                  format_bytes(vram.total()).c_str(), format_bytes(vram.slot_bytes).c_str(),
                  format_bytes(vram.scratch).c_str());
    std::printf("cpu       every layer's experts, router and feed-forward norm (below)%s\n",
                vram.slots > 0 ? ", but those in VRAM and those worth uploading" : "");
  }
  std::printf("budget    %s (minimum %s)\n", plan.host_budget ? format_bytes(*plan.host_budget).c_str() : "none",
              format_bytes(plan.minimum_host_bytes).c_str());
  std::printf("\nhost memory:\n");
  for (const PlanCost& cost : plan.fixed) std::printf("  %-40s %12s\n", cost.what.c_str(), format_bytes(cost.bytes).c_str());
  if (plan.streams())
    std::printf("  %-40s %12s\n", strprintf("staging (%d slots x %s)", plan.depth, format_bytes(plan.slot_bytes).c_str()).c_str(),
                format_bytes(plan.staging_bytes()).c_str());
  std::printf("  %-40s %12s\n", "resident weights", format_bytes(plan.resident_span_bytes()).c_str());
  const ExpertCachePlan& experts = plan.expert_cache;
  const int64_t all_experts = static_cast<int64_t>(experts.experts.layers.size()) * experts.experts.count;
  if (plan.caches_experts())
    std::printf("  %-40s %12s\n",
                strprintf("expert cache (%lld of %lld experts)", static_cast<long long>(experts.slots),
                          static_cast<long long>(all_experts)).c_str(),
                format_bytes(experts.bytes()).c_str());
  std::printf("  %-40s %12s\n", "total", format_bytes(plan.host_bytes()).c_str());

  // A table of zeros says nothing (every unit's weights elsewhere: on the GPU, or small tensors).
  const bool units_hold_weights = std::any_of(plan.units.begin(), plan.units.end(), [](const PlanUnit& unit) {
    return unit.resident_bytes() > 0 || unit.streamed_bytes() > 0;
  });
  if (units_hold_weights) {
    std::printf("\n  %-8s %12s %12s %12s\n", "unit", "resident", "streamed", "read/token");
    for (const PlanUnit& unit : plan.units)
      std::printf("  %-8s %12s %12s %12s\n", unit.name.c_str(), format_bytes(unit.resident_bytes()).c_str(),
                  format_bytes(unit.streamed_bytes()).c_str(), format_bytes(unit.read_bytes()).c_str());
  }
  const uint64_t compute_bytes = compute_bytes_per_token(plan, *model);
  const uint64_t gpu_bytes = experts_beside_gpu ? gpu_matrix_work(*model, GpuExperts::OnCpu).bytes : 0;
  std::printf("\nper token: %s read from disk, %s read by the CPU from host memory%s\n",
              format_bytes(plan.read_bytes_per_token()).c_str(), format_bytes(compute_bytes).c_str(),
              experts_beside_gpu ? (", " + format_bytes(gpu_bytes) + " by the GPU from VRAM").c_str() : "");
  if (plan.caches_experts())
    std::printf("experts:  read on demand after the router; with uniform routing %s more per token from disk, less when "
                "the router favours some\n",
                format_bytes(experts.uniform_read_bytes_per_token()).c_str());

  const auto profile = chosen_profile(args.engine.profile);
  Prediction prediction;
  // Beside a GPU, each layer's dense half runs there and its experts then on the CPU, one after the
  // other; the GPU's time needs a profile that measured one.
  const bool counts_gpu = experts_beside_gpu && profile && profile->has_gpu();
  double gpu_seconds = 0.0;
  if (profile) {
    prediction = predict_decode(plan, *profile, compute_bytes);
    if (counts_gpu) {
      gpu_seconds = static_cast<double>(gpu_bytes) / (profile->gpu_matvec_GBps * 1e9);
      const double seconds = std::max(prediction.disk_seconds, prediction.compute_seconds + gpu_seconds);
      prediction.decode_tok_s = 1.0 / seconds;
      if (seconds > prediction.disk_seconds) prediction.bound = prediction.compute_seconds >= gpu_seconds ? "cpu" : "gpu";
      std::printf("predicted decode: %.2f tok/s, bound by %s (per token: disk %.3f s, CPU %.3f s + GPU %.4f s; disk %.2f "
                  "GB/s, CPU %.2f GB/s, GPU %.0f GB/s); every chosen expert at the CPU's rate (those VRAM's cache "
                  "holds compute faster on the GPU), each layer's hops between GPU and CPU not counted\n",
                  prediction.decode_tok_s, prediction.bound.c_str(), prediction.disk_seconds, prediction.compute_seconds,
                  gpu_seconds, profile->disk_read_GBps, profile->cpu_matvec_GBps, profile->gpu_matvec_GBps);
    } else {
      std::printf("predicted decode%s: %.2f tok/s, bound by %s (disk %.3f s, compute %.3f s per token; disk %.2f GB/s, "
                  "CPU %.2f GB/s)\n",
                  experts_beside_gpu ? " of the host's part (the profile has no GPU measurements)" : "",
                  prediction.decode_tok_s, prediction.bound.c_str(), prediction.disk_seconds, prediction.compute_seconds,
                  profile->disk_read_GBps, profile->cpu_matvec_GBps);
    }
  } else {
    std::printf("no prediction: run 'flexinfer probe' once (or pass --profile FILE)\n");
  }

  if (!args.json.empty()) {
    nlohmann::json units = nlohmann::json::array();
    for (const PlanUnit& unit : plan.units)
      units.push_back({{"name", unit.name},
                       {"decode_device", "cpu"},
                       {"prefill_device", "cpu"},
                       {"weight_bytes", {{"gpu", 0}, {"host", unit.resident_bytes()}, {"disk", unit.streamed_bytes()}}},
                       {"read_bytes", unit.read_bytes()}});
    nlohmann::json fixed = nlohmann::json::array();
    for (const PlanCost& cost : plan.fixed) fixed.push_back({{"what", cost.what}, {"bytes", cost.bytes}});
    const nlohmann::json json = {
        {"model", file.path()},
        {"host", {{"budget_bytes", plan.host_budget ? nlohmann::json(*plan.host_budget) : nlohmann::json(nullptr)},
                  {"used_bytes", plan.host_bytes()},
                  {"minimum_bytes", plan.minimum_host_bytes},
                  {"fixed", fixed},
                  {"staging_slots", plan.depth},
                  {"slot_bytes", plan.slot_bytes},
                  {"resident_weight_bytes", plan.resident_bytes()},
                  {"expert_cache", {{"slots", experts.slots},
                                    {"experts", all_experts},
                                    {"bytes", experts.bytes()},
                                    {"uniform_read_bytes_per_token", experts.uniform_read_bytes_per_token()}}}}},
        {"gpu", {{"budget_bytes", experts_beside_gpu ? *args.engine.gpu_mem.bytes : 0}, {"used_bytes", gpu_used}}},
        {"layers", units},
        {"bytes_per_token", {{"disk", plan.read_bytes_per_token()}, {"host", compute_bytes}, {"gpu", gpu_bytes}}},
        {"predicted_decode_tok_s", profile ? nlohmann::json(prediction.decode_tok_s) : nlohmann::json(nullptr)},
        {"bound", profile ? nlohmann::json(prediction.bound) : nlohmann::json(nullptr)},
        {"seconds_per_token", profile ? nlohmann::json({{"disk", prediction.disk_seconds},
                                                         {"cpu", prediction.compute_seconds},
                                                         {"gpu", gpu_seconds}})
                                      : nlohmann::json(nullptr)},
        {"prediction_of", experts_beside_gpu && !counts_gpu ? "the host's part" : "the whole model"},
    };
    write_json(args.json, json, "plan");
  }
  return 0;
}

}  // namespace fi
