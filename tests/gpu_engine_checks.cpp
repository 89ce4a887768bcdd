#include "gpu_engine_checks.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "cuda/runtime.h"
#include "host/engine/engine.h"
#include "host/engine/placement.h"
#include "io/error.h"
#include "reference_forward.h"
#include "test_support.h"

namespace fi::test {

namespace {

constexpr size_t kPrefillTokens = 10, kDecodeSteps = 4, kLaterPrefillTokens = 6;

// Logits of every position: a prefill, decode steps, then a second prefill.
std::vector<float> run_passes(Engine& engine);

std::vector<float> run_engine(const std::string& path, std::optional<uint64_t> gpu_budget,
                              std::optional<uint64_t> host_budget = std::nullopt,
                              std::optional<Profile> profile = gpu_favoured_profile()) {
  EngineOptions options{path, 2, 64};
  options.gpu_budget = gpu_budget;
  options.host_budget = host_budget;
  options.profile = profile;
  Engine engine(options);
  return run_passes(engine);
}

std::vector<float> run_passes(Engine& engine) {
  const auto vocab = static_cast<size_t>(engine.config().vocab);
  auto prefill = [&](size_t count, size_t seed, std::vector<float>& logits) {
    std::vector<int32_t> tokens;
    for (size_t i = 0; i < count; ++i) tokens.push_back(static_cast<int32_t>((i * 37 + seed) % vocab));
    const size_t before = logits.size();
    logits.resize(before + count * vocab);
    engine.forward().eval(tokens, logits.data() + before, true);
  };
  std::vector<float> logits;
  prefill(kPrefillTokens, 3, logits);
  std::vector<float> step(vocab);
  for (size_t i = 0; i < kDecodeSteps; ++i) {
    const auto token = static_cast<int32_t>((i * 101 + 5) % vocab);
    engine.forward().eval(std::span<const int32_t>(&token, 1), step.data());
    logits.insert(logits.end(), step.begin(), step.end());
  }
  prefill(kLaterPrefillTokens, 11, logits);
  return logits;
}

// A budget pair's plan and what it must keep.
void expect_budgets_kept(const Engine& engine, uint64_t gpu, std::optional<uint64_t> host) {
  ASSERT_TRUE(engine.tiers().has_value());
  EXPECT_LE(engine.tiers()->gpu_used(), gpu);
  if (host) {
    EXPECT_LE(engine.tiers()->host_used(), *host);
    EXPECT_GT(engine.tiers()->disk_bytes_per_token(), 0u) << "this budget pair streams from disk";
  }
}



// More layers, so that disk reads into the three staging slots can save host memory when only the
// CPU-decoded layers stream.
std::string cpu_layers_model(WeightScheme scheme) {
  return generated_model(std::string("gpu-cpu-layers-") + weight_scheme_name(scheme),
                         {256, 8, 8, 4, 768, 2048, 0, 10000.0, false}, scheme);
}

EngineOptions tier_options(const std::string& path, uint64_t gpu, std::optional<uint64_t> host, const Profile& profile,
                           int64_t context = 64) {
  EngineOptions options{path, 2, context};
  options.gpu_budget = gpu;
  options.host_budget = host;
  options.profile = profile;
  return options;
}

using BudgetPairs = std::vector<std::pair<uint64_t, std::optional<uint64_t>>>;

// Budget pairs that split the model over the tiers under `profile`: for each of `fractions` of
// the weights' room taken from the GPU (more comes off: the staging slots need room, two whole
// layers when the CPU decodes some), host memory unlimited; then host memory a quarter of its
// weights short, so that some rows come from disk. Pairs no placement fits are left out.
BudgetPairs split_budgets(const std::string& path, const Profile& profile, std::initializer_list<double> fractions,
                          int64_t context = 64) {
  EngineOptions options{path, 2, context};
  options.gpu_budget = 1ull << 30;
  const GpuMemoryPlan whole = Engine(options).gpu_memory();
  BudgetPairs pairs;
  for (double fraction : fractions) {
    const uint64_t gpu = whole.total() - static_cast<uint64_t>(static_cast<double>(whole.weights) * fraction);
    try {
      const TierPlan plan = *Engine(tier_options(path, gpu, std::nullopt, profile, context)).tiers();
      pairs.push_back({gpu, std::nullopt});
      const uint64_t host = plan.host_used() - plan.host_weight_bytes / 4;
      Engine(tier_options(path, gpu, host, profile, context));
      pairs.push_back({gpu, host});
    } catch (const Error&) {
      // Below what the model needs on the GPU or in host memory: not a pair to compare.
    }
  }
  return pairs;
}

}  // namespace

EngineOptions cpu_decoded_layers_options(const std::string& path, int64_t context) {
  // The smallest cut that fits: a small model's fixed costs may not leave room for a sixteenth.
  for (const auto& [gpu, host] : split_budgets(path, cpu_favoured_profile(), {1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0 / 2}, context))
    if (!host) return tier_options(path, gpu, std::nullopt, cpu_favoured_profile(), context);
  throw std::runtime_error("no budget splits " + path);
}

Profile gpu_favoured_profile() {
  Profile profile;
  profile.machine = "test: fast PCIe, slow CPU";
  profile.disk_read_GBps = 2.0;
  profile.host_read_GBps = 10.0;
  profile.cpu_matvec_GBps = 0.1;
  profile.h2d_pinned_GBps = profile.h2d_pageable_GBps = profile.d2h_GBps = 50.0;
  profile.vram_read_GBps = profile.gpu_matvec_GBps = 1000.0;
  return profile;
}

Profile cpu_favoured_profile() {
  Profile profile = gpu_favoured_profile();
  profile.machine = "test: slow PCIe, fast CPU and disk";
  profile.disk_read_GBps = 50.0;
  profile.host_read_GBps = profile.cpu_matvec_GBps = 100.0;
  profile.h2d_pinned_GBps = profile.h2d_pageable_GBps = profile.d2h_GBps = 0.5;
  return profile;
}

void check_gpu_logits_match_cpu(const EngineCase& engine_case) {
  const ModelShape shape{256, 3, 8, 2, 768, 2048, 0, 10000.0, engine_case.tied};
  const std::string path = generated_model(std::string("gpu-") + engine_case.name, shape, engine_case.scheme);
  const std::vector<float> cpu = run_engine(path, std::nullopt);
  const std::vector<float> gpu = run_engine(path, 1ull << 30);
  ASSERT_EQ(cpu.size(), gpu.size());
  EXPECT_LT(relative_rms(gpu, cpu), engine_case.tolerance);
}

uint64_t dense_half_gpu_bytes(const std::string& path, int64_t sequences) {
  ModelOptions options;
  options.context = 64;
  options.sequences = sequences;
  return gpu_memory_plan(*Model::open(path, options), GpuExperts::OnCpu).total();
}

void check_gpu_experts() {
  for (const char* preset : {"tiny-qwen3moe", "tiny-mixtral"}) {
    SCOPED_TRACE(preset);
    // Float weights for the comparisons with the CPU engine: with quantized ones its 8-bit
    // activations tip routing near-ties otherwise than the GPU's float ones.
    const std::string float_path = preset_model(preset, "f16");
    const std::vector<float> cpu = run_engine(float_path, std::nullopt);
    EngineOptions whole{float_path, 2, 64};
    whole.gpu_budget = 1ull << 30;
    Engine on_gpu_engine(whole);
    EXPECT_EQ(on_gpu_engine.host_model(), nullptr) << "every expert in VRAM";
    const std::vector<float> on_gpu = run_passes(on_gpu_engine);
    // A host budget changes nothing when everything is in VRAM.
    const std::vector<float> with_host_budget = run_engine(float_path, 1ull << 30, 64ull << 20);
    ASSERT_EQ(with_host_budget.size(), on_gpu.size());
    EXPECT_EQ(0, std::memcmp(with_host_budget.data(), on_gpu.data(), on_gpu.size() * sizeof(float)));
    const std::vector<float> beside = run_engine(float_path, dense_half_gpu_bytes(float_path));
    ASSERT_EQ(cpu.size(), on_gpu.size());
    ASSERT_EQ(cpu.size(), beside.size());
    EXPECT_LT(relative_rms(on_gpu, cpu), 5e-3) << "every expert on the GPU";
    EXPECT_LT(relative_rms(beside, cpu), 5e-3) << "attention on the GPU, experts on the CPU";

    // Beside the GPU, every host budget from the fewest expert slots to every expert: the same
    // bits, within it.
    const std::string path = preset_model(preset, "q4_k_m");
    const uint64_t dense_half = dense_half_gpu_bytes(path);
    const std::vector<float> resident = run_engine(path, dense_half);
    ModelOptions model_options;
    model_options.context = 64;
    const auto model = Model::open(path, model_options);
    const uint64_t minimum = make_plan(host_plan_input(*model, std::nullopt, 2, HostPart::ExpertHalves)).minimum_host_bytes;
    const uint64_t everything = make_plan(host_plan_input(*model, std::nullopt, 2, HostPart::ExpertHalves)).host_bytes();
    ASSERT_LT(minimum, everything);
    int cached = 0;
    for (int step = 0; step <= 6; ++step) {
      const uint64_t budget = minimum + (everything - minimum) * static_cast<uint64_t>(step) / 6;
      SCOPED_TRACE("--host-mem " + std::to_string(budget));
      EngineOptions options{path, 2, 64};
      options.gpu_budget = dense_half;
      options.host_budget = budget;
      Engine engine(options);
      ASSERT_NE(engine.host_model(), nullptr) << "the experts stay on the CPU";
      const std::vector<float> logits = run_passes(engine);
      ASSERT_EQ(logits.size(), resident.size());
      EXPECT_EQ(0, std::memcmp(logits.data(), resident.data(), logits.size() * sizeof(float)));
      EXPECT_LE(engine.host_model()->arena().used(), budget) << "arena high-water mark";
      EXPECT_LE(engine.host_model()->plan().host_bytes(), budget);
      if (engine.host_model()->plan().caches_experts()) ++cached;
    }
    EXPECT_GE(cached, 3) << "most budgets read experts on demand";
    // The dense half does not fit: one line with what it needs.
    EngineOptions small{path, 2, 64};
    small.gpu_budget = dense_half - 1;
    try {
      Engine engine(small);
      FAIL() << "a byte below the dense half was accepted";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("is below the"), std::string::npos) << error.what();
    }
  }
}

namespace {

// A MoE file as the expert cache checks use it (a 64-token context): the VRAM of its dense half
// beside the CPU's experts, one cache slot's plan, the host budgets of the experts beside the GPU
// (the smallest and everything), and the logits of the two placements a cache lies between: the
// experts on the CPU alone (the GPU holds the dense half) and every expert in VRAM.
struct ExpertCacheFile {
  std::unique_ptr<Model> model;
  uint64_t dense_half = 0;
  GpuExpertCachePlan one;
  uint64_t minimum_host = 0, every_host_byte = 0;
  std::vector<float> beside, on_gpu;
};

ExpertCacheFile expert_cache_file(const std::string& path) {
  ExpertCacheFile file;
  ModelOptions model_options;
  model_options.context = 64;
  file.model = Model::open(path, model_options);
  file.dense_half = dense_half_gpu_bytes(path);
  file.one = gpu_expert_cache_plan(*file.model, UINT64_MAX);
  const Plan host = make_plan(host_plan_input(*file.model, std::nullopt, 2, HostPart::ExpertHalves));
  file.minimum_host = host.minimum_host_bytes;
  file.every_host_byte = host.host_bytes();
  file.beside = run_engine(path, file.dense_half);
  file.on_gpu = run_engine(path, 1ull << 30);
  return file;
}

}  // namespace

void check_gpu_expert_cache() {
  for (const char* preset : {"tiny-qwen3moe", "tiny-mixtral"}) {
    SCOPED_TRACE(preset);
    // Interleaved rows on the CPU (Q4_K with the SIMD kernels) reach the GPU in plain blocks.
    const std::string path = preset_model(preset, "q4_k_m");
    const ExpertCacheFile file = expert_cache_file(path);
    const Model& model = *file.model;
    const ModelConfig& c = model.config();
    const uint64_t dense_half = file.dense_half;
    const GpuExpertCachePlan& one = file.one;
    const std::vector<float>& beside = file.beside;
    const std::vector<float>& on_gpu = file.on_gpu;
    ASSERT_GT(one.slot_bytes, 0u);
    EXPECT_EQ(gpu_expert_cache_plan(model, one.scratch + one.slot_bytes - 1).slots, 0) << "no room for one slot";
    const uint64_t all_experts = static_cast<uint64_t>(c.n_layers * c.n_experts);
    for (uint64_t slots : {uint64_t{1}, static_cast<uint64_t>(c.n_experts_used), all_experts / 2}) {
      SCOPED_TRACE(std::to_string(slots) + " slots");
      const uint64_t gpu_budget = dense_half + one.scratch + slots * one.slot_bytes;
      std::vector<float> first;
      // The cache decides by the routing alone: every host budget gives the same bits.
      const uint64_t minimum = file.minimum_host, everything = file.every_host_byte;
      for (uint64_t host_budget : {minimum, (minimum + everything) / 2, everything}) {
        SCOPED_TRACE("--host-mem " + std::to_string(host_budget));
        EngineOptions options{path, 2, 64};
        options.gpu_budget = gpu_budget;
        options.host_budget = host_budget;
        options.profile = nominal_profile();
        Engine engine(options);
        ASSERT_NE(engine.gpu_expert_cache(), nullptr);
        EXPECT_EQ(engine.gpu_expert_cache()->slots(), static_cast<int64_t>(slots));
        EXPECT_LE(engine.gpu_memory().total() + engine.gpu_expert_cache_plan().total(), gpu_budget);
        const std::vector<float> logits = run_passes(engine);
        EXPECT_LE(engine.host_model()->arena().used(), host_budget) << "arena high-water mark";
        const ExpertAssistStats stats = engine.gpu_expert_cache()->stats();
        EXPECT_GT(stats.uses, 0u);
        EXPECT_GT(stats.uploads, stats.kept) << "prefill uploads experts to compute them";
        if (slots >= static_cast<uint64_t>(c.n_experts_used)) {
          EXPECT_GT(stats.hits, 0u) << "decode finds experts in VRAM";
        }
        ASSERT_EQ(logits.size(), beside.size());
        // The GPU's experts multiply float activations, the CPU's 8-bit ones (which tip the
        // routing's near-ties): between the two placements, no farther from either than they are
        // from each other.
        const double apart = relative_rms(beside, on_gpu);
        EXPECT_LT(apart, 1e-1);
        EXPECT_LE(relative_rms(logits, beside), apart * 1.1) << "against the experts on the CPU alone";
        EXPECT_LE(relative_rms(logits, on_gpu), apart * 1.1) << "against every expert on the GPU";
        if (first.empty()) first = logits;
        else EXPECT_EQ(0, std::memcmp(first.data(), logits.data(), logits.size() * sizeof(float)));
      }
    }
    // Where the CPU is faster than the bus, or the profile has no rates, nothing uploads to compute
    // at once: the cache still keeps copies of the experts chosen most.
    Profile no_rates = nominal_profile();
    no_rates.cpu_matvec_GBps = 0;
    no_rates.cpu_matvec_GBps_by_type.clear();
    for (const Profile& profile : {cpu_favoured_profile(), no_rates}) {
      SCOPED_TRACE(profile.machine);
      EngineOptions options{path, 2, 64};
      options.gpu_budget = dense_half + one.scratch + static_cast<uint64_t>(c.n_experts_used) * one.slot_bytes;
      options.profile = profile;
      Engine engine(options);
      run_passes(engine);
      const ExpertAssistStats stats = engine.gpu_expert_cache()->stats();
      EXPECT_GT(stats.kept, 0u);
      EXPECT_EQ(stats.uploads, stats.kept);
    }
  }
}

void check_gpu_expert_cache_recovers_from_a_failed_pass() {
  const std::string original = preset_model("tiny-qwen3moe", "q4_k_m");
  const std::string path = scratch_path("gpu-expert-cache-failing.gguf");
  auto restore = [&] { std::filesystem::copy_file(original, path, std::filesystem::copy_options::overwrite_existing); };
  restore();
  const ExpertCacheFile file = expert_cache_file(path);
  const ModelConfig& c = file.model->config();
  const double apart = relative_rms(file.beside, file.on_gpu);
  for (bool speculate : {false, true}) {
    SCOPED_TRACE(speculate ? "reading ahead" : "not reading ahead");
    restore();
    EngineOptions options{path, 2, 64};
    // Room for half the experts: the failing layer's experts find free slots.
    options.gpu_budget =
        file.dense_half + file.one.scratch + static_cast<uint64_t>(c.n_layers * c.n_experts / 2) * file.one.slot_bytes;
    // The smallest host budget: the experts are read from the file as the router chooses them.
    options.host_budget = file.minimum_host;
    options.profile = nominal_profile();
    // Without reading ahead the failing read is of the chosen experts, after the cache has given
    // them slots; with it, often of the next layer's predicted ones.
    options.experts.speculate = speculate;
    Engine engine(options);
    ASSERT_NE(engine.gpu_expert_cache(), nullptr);
    // The first layers' experts are still in the file: the cache takes slots for them and keeps or
    // computes some, and the pass fails at a later layer's read.
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(std::filesystem::file_size(path) / 3)), 0);
    const int32_t tokens[] = {5, 9, 13};
    std::vector<float> failed(std::size(tokens) * static_cast<size_t>(c.vocab));
    for (int attempt = 0; attempt < 2; ++attempt)
      EXPECT_THROW(engine.forward().eval(tokens, failed.data(), true), Error);
    EXPECT_GT(engine.gpu_expert_cache()->stats().uploads, 0u) << "the failed passes used the cache";
    restore();
    const std::vector<float> logits = run_passes(engine);
    EXPECT_GT(engine.gpu_expert_cache()->stats().hits, 0u);
    ASSERT_EQ(logits.size(), file.beside.size());
    // Within what separates the experts on the CPU from every expert on the GPU, as
    // check_gpu_expert_cache asks of a run that never failed: no slot computes from stale weights.
    EXPECT_LE(relative_rms(logits, file.beside), apart * 1.1) << "against the experts on the CPU alone";
    EXPECT_LE(relative_rms(logits, file.on_gpu), apart * 1.1) << "against every expert on the GPU";
  }
}

void check_gpu_budget() {
  const std::string path = generated_model("gpu-budget", {256, 3, 8, 2, 768, 2048, 0, 10000.0, false}, WeightScheme::Q4_0);
  EngineOptions options{path, 2, 64};
  options.gpu_budget = 1ull << 30;
  const uint64_t needed = Engine(options).gpu_memory().total();
  {
    // One byte short: the weights are split over the tiers, within the budget.
    options.gpu_budget = needed - 1;
    Engine engine(options);
    ASSERT_TRUE(engine.tiers().has_value());
    EXPECT_LE(engine.tiers()->gpu_used(), needed - 1);
  }
  options.gpu_budget = 4ull << 20;
  try {
    Engine engine(options);
    FAIL() << "4 MiB of VRAM was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("no placement fits --gpu-mem"), std::string::npos) << error.what();
  }
  options.gpu_budget = needed;
  uint64_t free_before = 0, free_after = 0, total = 0;
  cuda::device_memory(&free_before, &total);
  Engine engine(options);
  EXPECT_FALSE(engine.tiers().has_value()) << "at the minimum everything is resident";
  cuda::device_memory(&free_after, &total);
  // cudaMalloc rounds to its 2 MiB pages; cuBLAS keeps a little of its own beside our workspace.
  // Signed: free memory may grow meanwhile (another process's memory released).
  EXPECT_LE(static_cast<int64_t>(free_before) - static_cast<int64_t>(free_after), static_cast<int64_t>(needed + (64ull << 20)));
}

void check_gpu_tiers_bit_identical(const std::string& name, const ModelShape& shape, WeightScheme scheme) {
  SCOPED_TRACE(name);
  const std::string path = generated_model("gpu-tiers-" + name, shape, scheme);
  const std::vector<float> resident = run_engine(path, 1ull << 30);
  // From a sixteenth to three quarters of the weights off the GPU. Near the GPU's minimum the
  // only placement that fits may decode a layer on the CPU (its KV cache then leaves VRAM): such
  // a plan is held to the tolerance instead.
  int all_gpu = 0;
  for (const auto& [gpu, host] : split_budgets(path, gpu_favoured_profile(), {1.0 / 16, 0.25, 0.5, 0.75})) {
    SCOPED_TRACE("gpu " + std::to_string(gpu) + " host " + (host ? std::to_string(*host) : "unlimited"));
    int cpu_layers = 0;
    {
      const Engine engine(tier_options(path, gpu, host, gpu_favoured_profile()));
      expect_budgets_kept(engine, gpu, host);
      cpu_layers = engine.tiers()->cpu_layers();
    }
    const std::vector<float> tiered = run_engine(path, gpu, host);
    ASSERT_EQ(tiered.size(), resident.size());
    if (cpu_layers == 0) {
      ++all_gpu;
      EXPECT_EQ(tiered, resident) << "logits differ from the fully resident run";
    } else {
      EXPECT_LT(relative_rms(tiered, resident), 5e-2) << cpu_layers << " layers decoded on the CPU";
    }
  }
  EXPECT_GE(all_gpu, 4) << "budget pairs with every layer on the GPU";
}

void check_gpu_tiers_recover_from_a_failed_pass() {
  const int32_t tokens[] = {5, 9};
  const std::pair<std::string, Profile> cases[] = {
      {generated_model("gpu-tiers-q4_0", kTierShape, WeightScheme::Q4_0), gpu_favoured_profile()},
      {cpu_layers_model(WeightScheme::Q4_0), cpu_favoured_profile()}};
  for (const auto& [original, profile] : cases) {
    const std::string path = scratch_path("gpu-tiers-failing.gguf");
    auto restore = [&] { std::filesystem::copy_file(original, path, std::filesystem::copy_options::overwrite_existing); };
    restore();
    // A host budget short of the weights, so that rows stream from disk.
    const BudgetPairs pairs = split_budgets(path, profile, {1.0 / 16, 0.25, 0.5});
    const auto streaming = std::find_if(pairs.begin(), pairs.end(), [](const auto& pair) { return pair.second.has_value(); });
    ASSERT_NE(streaming, pairs.end());
    const auto& [gpu, host] = *streaming;
    SCOPED_TRACE("gpu " + std::to_string(gpu) + " host " + std::to_string(*host));
    Engine engine(tier_options(path, gpu, host, profile));
    uint64_t disk = 0;
    for (const TierUnit& unit : engine.tiers()->units) disk += unit.disk_bytes();
    ASSERT_GT(disk, 0u);
    std::vector<float> logits(static_cast<size_t>(engine.config().vocab));
    engine.forward().eval(std::span<const int32_t>(&tokens[0], 1), logits.data());
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(std::filesystem::file_size(path) / 3)), 0);
    for (int attempt = 0; attempt < 2; ++attempt)
      EXPECT_THROW(engine.forward().eval(std::span<const int32_t>(&tokens[1], 1), logits.data()), Error);
    restore();
    engine.forward().eval(std::span<const int32_t>(&tokens[1], 1), logits.data());

    Engine fresh(tier_options(path, gpu, host, profile));
    std::vector<float> expected(logits.size());
    for (const int32_t& token : tokens) fresh.forward().eval(std::span<const int32_t>(&token, 1), expected.data());
    EXPECT_EQ(logits, expected);
  }
}

void check_gpu_cpu_decoded_layers(const EngineCase& engine_case) {
  const std::string path = cpu_layers_model(engine_case.scheme);
  const std::vector<float> resident = run_engine(path, 1ull << 30);
  const std::vector<float> cpu = run_engine(path, std::nullopt);
  const size_t vocab = resident.size() / (kPrefillTokens + kDecodeSteps + kLaterPrefillTokens);
  const auto prefill_end = static_cast<std::ptrdiff_t>(kPrefillTokens * vocab);
  const BudgetPairs pairs = split_budgets(path, cpu_favoured_profile(), {1.0 / 16, 0.5});
  EXPECT_EQ(pairs.size(), 4u);
  for (const auto& [gpu, host] : pairs) {
    SCOPED_TRACE("gpu " + std::to_string(gpu) + " host " + (host ? std::to_string(*host) : "unlimited"));
    {
      const Engine engine(tier_options(path, gpu, host, cpu_favoured_profile()));
      expect_budgets_kept(engine, gpu, host);
      const TierPlan& plan = *engine.tiers();
      EXPECT_GT(plan.cpu_layers(), 0) << "PCIe is slow and the CPU fast: the last layers decode on the CPU";
      EXPECT_LT(plan.cpu_layers(), engine.config().n_layers) << "some layers still decode on the GPU";
      if (host) {
        uint64_t cpu_disk = 0;
        for (const TierUnit& unit : plan.units)
          if (unit.decode == ComputeDevice::Cpu) cpu_disk += unit.disk_bytes();
        EXPECT_GT(cpu_disk, 0u) << "the CPU-decoded layers read rows from disk";
      }
    }
    const std::vector<float> mixed = run_engine(path, gpu, host, cpu_favoured_profile());
    ASSERT_EQ(mixed.size(), resident.size());
    EXPECT_TRUE(std::equal(mixed.begin(), mixed.begin() + prefill_end, resident.begin()))
        << "prefill runs every layer on the GPU: the resident run's logits, bit for bit";
    const std::vector<float> mixed_rest(mixed.begin() + prefill_end, mixed.end());
    const std::vector<float> resident_rest(resident.begin() + prefill_end, resident.end());
    const std::vector<float> cpu_rest(cpu.begin() + prefill_end, cpu.end());
    EXPECT_NE(mixed_rest, resident_rest) << "the CPU computed nothing";
    EXPECT_LT(relative_rms(mixed_rest, resident_rest), engine_case.tolerance);
    EXPECT_LT(relative_rms(mixed_rest, cpu_rest), engine_case.tolerance);
  }
}

void check_gpu_matches_float64_reference(const std::string& name, const ModelShape& shape, WeightScheme scheme,
                                         double tolerance, const std::vector<TensorTypeOverride>& tensor_types) {
  const std::string path = generated_model(name, shape, scheme, 7, tensor_types);
  EngineOptions options{path, 2, 64};
  options.gpu_budget = 1ull << 30;
  Engine engine(options);
  std::vector<int32_t> tokens;
  for (int32_t i = 0; i < 12; ++i) tokens.push_back((i * 97 + 1) % static_cast<int32_t>(engine.config().vocab));
  const auto vocab = static_cast<size_t>(engine.config().vocab);
  // A 12-token prefill (cuBLAS) and 3 decode steps (matrix-vector kernels).
  std::vector<float> logits(tokens.size() * vocab);
  engine.forward().eval(std::span<const int32_t>(tokens.data(), 9), logits.data(), true);
  for (size_t t = 9; t < tokens.size(); ++t) engine.forward().eval(std::span<const int32_t>(&tokens[t], 1), &logits[t * vocab]);
  EXPECT_LT(relative_rms(logits, reference_logits(engine.model(), tokens)), tolerance) << name;
}

void check_gpu_newer_families_tiers() {
  check_gpu_tiers_bit_identical("llama3-q4_k_m", kTierShapeLlama3, WeightScheme::Q4_K_M);
  check_gpu_tiers_bit_identical("qwen2-q4_0", kTierShapeQwen2, WeightScheme::Q4_0);
  check_gpu_tiers_bit_identical("qwen3-q4_k", kTierShapeQwen3, WeightScheme::Q4_K);
  check_gpu_tiers_bit_identical("q2_k", kTierShape, WeightScheme::Q2_K);
  check_gpu_tiers_bit_identical("q3_k_m", kTierShape, WeightScheme::Q3_K_M);
  check_gpu_tiers_bit_identical("qwen2-iq4_xs", kTierShapeQwen2, WeightScheme::IQ4_XS);
  check_gpu_tiers_bit_identical("q4_1", kTierShape, WeightScheme::Q4_1);
  check_gpu_tiers_bit_identical("q5_0", kTierShape, WeightScheme::Q5_0);
  check_gpu_tiers_bit_identical("q5_1", kTierShape, WeightScheme::Q5_1);
  check_gpu_tiers_bit_identical("iq4_nl", kTierShape, WeightScheme::IQ4_NL);
}

void check_gpu_newer_families_reference() {
  const double float_tolerance = 5e-3, quantized = 5e-2;
  check_gpu_matches_float64_reference("ref-llama-biases", {64, 2, 4, 2, 96, 512, 0, 10000.0, false, "llama", 0, {}, true},
                                      WeightScheme::F32, float_tolerance);
  check_gpu_matches_float64_reference("ref-llama-head-dim", {64, 2, 4, 2, 96, 512, 0, 10000.0, false, "llama", 24},
                                      WeightScheme::F16, float_tolerance);
  check_gpu_matches_float64_reference(
      "ref-llama-linear", {64, 2, 4, 2, 96, 512, 0, 10000.0, false, "llama", 0, {RopeScaling::Type::Linear, 4.0, 8192, 1, 4}},
      WeightScheme::F32, float_tolerance);
  check_gpu_matches_float64_reference(
      "ref-llama3", {64, 2, 4, 2, 96, 512, 0, 500000.0, false, "llama", 0, {RopeScaling::Type::Llama3, 8.0, 64, 1, 4}},
      WeightScheme::F16, float_tolerance);
  check_gpu_matches_float64_reference("ref-qwen2", {64, 2, 4, 2, 96, 512, 0, 1000000.0, true, "qwen2"},
                                      WeightScheme::F32, float_tolerance);
  check_gpu_matches_float64_reference("ref-qwen2-partial", {64, 2, 4, 2, 96, 512, 8, 1000000.0, false, "qwen2"},
                                      WeightScheme::F32, float_tolerance);
  check_gpu_matches_float64_reference("ref-qwen3", {64, 2, 4, 2, 96, 512, 0, 1000000.0, false, "qwen3", 32},
                                      WeightScheme::F16, float_tolerance);
  check_gpu_matches_float64_reference("ref-qwen3-q4_k", {256, 2, 4, 2, 512, 512, 0, 1000000.0, true, "qwen3", 128},
                                      WeightScheme::Q4_K, quantized);
  // Experts whose gate and up differ in type (per-tensor types), every expert in VRAM.
  check_gpu_matches_float64_reference("ref-qwen3moe-gate-up-differ",
                                      {256, 2, 4, 2, 512, 512, 0, 1000000.0, false, "qwen3moe", 64, {}, false, 8, 2, 256, 2.0},
                                      WeightScheme::Q4_K, quantized, {{Role::FfnUpExps, TensorType::Q8_0}});
}

void check_gpu_trace() {
  const std::string path = cpu_layers_model(WeightScheme::Q4_0);
  const BudgetPairs budgets = split_budgets(path, cpu_favoured_profile(), {1.0 / 16});
  ASSERT_EQ(budgets.size(), 2u);
  EngineOptions options = tier_options(path, budgets[1].first, budgets[1].second, cpu_favoured_profile());
  const std::string trace_path = scratch_path("gpu-trace.json");
  options.trace = trace_path;
  Engine engine(options);
  ASSERT_GT(engine.tiers()->cpu_layers(), 0);
  std::vector<float> logits(static_cast<size_t>(engine.config().vocab));
  for (int32_t token : {1, 2, 3}) engine.forward().eval(std::span<const int32_t>(&token, 1), logits.data());
  engine.trace()->finish();
  const std::string text = read_bytes_as_text(trace_path);
  EXPECT_TRUE(nlohmann::json::parse(text, nullptr, false).is_array()) << "the trace does not parse";
  for (const char* track : {"disk reads", "uploads (GPU)", "compute (GPU)", "compute (CPU)"})
    EXPECT_NE(text.find(std::string("\"cat\":\"") + track + "\""), std::string::npos) << track << " spans missing";
  EXPECT_NE(text.find("\"layer 0\""), std::string::npos);
  EXPECT_NE(text.find("\"layer 3\""), std::string::npos);
  EXPECT_NE(text.find("\"upload blk.0\""), std::string::npos);
}

void check_gpu_sequences_share_passes() {
  const std::string path = cpu_layers_model(WeightScheme::Q8_0);
  EngineOptions resident{path, 2, 64};
  resident.gpu_budget = 1ull << 30;
  const EngineOptions mixed = cpu_decoded_layers_options(path, 64);
  struct Step {
    int64_t sequence;
    int32_t first, count;
    bool logits;
  };
  // At most kMaxMatvecTokens per pass: every product goes through the matrix-vector kernels, whose
  // sums per token do not depend on the batch (cuBLAS's may).
  const std::vector<std::vector<Step>> passes = {
      {{0, 0, 5, true}, {1, 5, 3, false}},
      {{2, 8, 4, true}, {0, 12, 1, true}, {1, 13, 2, true}},
      {{1, 15, 1, true}, {0, 16, 1, true}, {2, 17, 1, true}},
      {{1, 18, 5, true}, {2, 23, 1, false}},
      {{2, 24, 1, true}, {1, 25, 1, true}},
  };
  constexpr size_t kRewoundPass = 3;  // sequence 1 starts again before it
  // Mixture of experts: each pass routes all its sequences' tokens together, every expert in VRAM
  // or the experts on the CPU beside the GPU.
  const std::string moe = preset_model("tiny-qwen3moe", "q8_0");
  EngineOptions moe_on_gpu{moe, 2, 64};
  moe_on_gpu.gpu_budget = 1ull << 30;
  EngineOptions moe_beside = moe_on_gpu;
  moe_beside.gpu_budget = dense_half_gpu_bytes(moe, 3);
  struct Case {
    EngineOptions options;
    bool exact;
    const char* name;
  };
  for (const auto& [options, exact, name] :
       {Case{resident, true, "resident"}, Case{mixed, false, "last layers decoded on the CPU"},
        Case{moe_on_gpu, true, "experts in VRAM"}, Case{moe_beside, true, "experts on the CPU"}}) {
    SCOPED_TRACE(name);
    EngineOptions shared_options = options;
    shared_options.sequences = 3;
    Engine together(shared_options);
    Engine alone(options);
    const auto vocab = static_cast<size_t>(together.config().vocab);
    auto token = [&](int32_t i) { return static_cast<int32_t>((static_cast<size_t>(i) * 53 + 7) % vocab); };
    // Per sequence, the pieces it was given so far (alone replays them).
    std::vector<std::vector<std::vector<int32_t>>> pieces(3);
    std::vector<float> logits(3 * vocab), expected(vocab);
    for (size_t p = 0; p < passes.size(); ++p) {
      if (p == kRewoundPass) {
        together.forward().rewind(0, 1);
        pieces[1].clear();
      }
      std::vector<std::vector<int32_t>> chunk_tokens;
      for (const Step& step : passes[p]) {
        chunk_tokens.emplace_back();
        for (int32_t i = step.first; i < step.first + step.count; ++i) chunk_tokens.back().push_back(token(i));
      }
      std::vector<SequenceChunk> chunks;
      for (size_t c = 0; c < passes[p].size(); ++c) chunks.push_back({passes[p][c].sequence, chunk_tokens[c], passes[p][c].logits});
      together.forward().eval_together(chunks, logits.data());
      size_t row = 0;
      for (size_t c = 0; c < passes[p].size(); ++c) {
        const Step& step = passes[p][c];
        auto& given = pieces[static_cast<size_t>(step.sequence)];
        given.push_back(chunk_tokens[c]);
        if (!step.logits) continue;
        alone.forward().reset();
        for (const auto& piece : given) alone.forward().eval(piece, expected.data());
        const std::vector<float> got(logits.begin() + static_cast<std::ptrdiff_t>(row * vocab),
                                     logits.begin() + static_cast<std::ptrdiff_t>((row + 1) * vocab));
        if (exact) EXPECT_EQ(got, expected) << "pass " << p << " sequence " << step.sequence;
        else EXPECT_LT(relative_rms(got, expected), 2e-2) << "pass " << p << " sequence " << step.sequence;
        ++row;
      }
    }
  }
}

}  // namespace fi::test
