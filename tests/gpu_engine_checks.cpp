#include "gpu_engine_checks.h"

#include "cuda/runtime.h"
#include "host/engine.h"
#include "io/error.h"
#include "test_support.h"

namespace fi::test {

namespace {

std::vector<float> run_engine(const std::string& path, std::optional<uint64_t> gpu_budget,
                              std::optional<uint64_t> host_budget = std::nullopt) {
  EngineOptions options{path, 2, 64};
  options.gpu_budget = gpu_budget;
  options.host_budget = host_budget;
  Engine engine(options);
  const auto vocab = static_cast<size_t>(engine.config().vocab);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 10; ++i) prompt.push_back(static_cast<int32_t>((i * 37 + 3) % vocab));
  std::vector<float> logits(prompt.size() * vocab);
  engine.forward().eval(prompt, logits.data(), true);
  std::vector<float> step(vocab);
  for (int i = 0; i < 4; ++i) {
    const auto token = static_cast<int32_t>((i * 101 + 5) % vocab);
    engine.forward().eval(std::span<const int32_t>(&token, 1), step.data());
    logits.insert(logits.end(), step.begin(), step.end());
  }
  return logits;
}

}  // namespace

void check_gpu_logits_match_cpu(const EngineCase& engine_case) {
  const ModelShape shape{256, 3, 8, 2, 768, 2048, 0, 10000.0, engine_case.tied};
  const std::string path = generated_model(std::string("gpu-") + engine_case.name, shape, engine_case.scheme);
  const std::vector<float> cpu = run_engine(path, std::nullopt);
  const std::vector<float> gpu = run_engine(path, 1ull << 30);
  ASSERT_EQ(cpu.size(), gpu.size());
  EXPECT_LT(relative_rms(gpu, cpu), engine_case.tolerance);
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
  EXPECT_LE(free_before - free_after, needed + (64ull << 20));
}

void check_gpu_tiers_bit_identical(WeightScheme scheme) {
  const std::string path = generated_model(std::string("gpu-tiers-") + (scheme == WeightScheme::Q4_0 ? "q4_0" : "q4_k_m"),
                                           {512, 4, 8, 4, 1536, 2048, 0, 10000.0, false}, scheme);
  const std::vector<float> resident = run_engine(path, 1ull << 30);
  EngineOptions options{path, 2, 64};
  options.gpu_budget = 1ull << 30;
  const GpuMemoryPlan whole = Engine(options).gpu_memory();
  // A quarter of the weights' room taken from the GPU (more comes off: the staging slots need
  // room), all of them in host memory; then a quarter of those moved on to disk.
  options.gpu_budget = whole.total() - whole.weights / 4;
  uint64_t host_all = 0, host_weights = 0;
  {
    Engine engine(options);
    ASSERT_TRUE(engine.tiers().has_value()) << "the model no longer fits the GPU budget";
    host_all = engine.tiers()->host_used();
    host_weights = engine.tiers()->host_weight_bytes;
    EXPECT_GT(host_weights, 0u);
    EXPECT_LE(engine.tiers()->gpu_used(), *options.gpu_budget);
  }
  const std::vector<std::pair<uint64_t, std::optional<uint64_t>>> budgets = {
      {*options.gpu_budget, std::nullopt},
      {*options.gpu_budget, host_all - host_weights / 4}};
  for (const auto& [gpu, host] : budgets) {
    SCOPED_TRACE("gpu " + std::to_string(gpu) + " host " + (host ? std::to_string(*host) : "unlimited"));
    options.gpu_budget = gpu;
    options.host_budget = host;
    {
      Engine engine(options);
      ASSERT_TRUE(engine.tiers().has_value());
      EXPECT_LE(engine.tiers()->gpu_used(), gpu);
      if (host) {
        EXPECT_LE(engine.tiers()->host_used(), *host);
        EXPECT_GT(engine.tiers()->disk_bytes_per_token(), 0u) << "this budget pair streams from disk";
      }
    }
    const std::vector<float> tiered = run_engine(path, gpu, host);
    ASSERT_EQ(tiered.size(), resident.size());
    EXPECT_EQ(tiered, resident) << "logits differ from the fully resident run";
  }
}

void check_gpu_trace() {
  const std::string path = generated_model("gpu-tiers-q4_0", {512, 4, 8, 4, 1536, 2048, 0, 10000.0, false}, WeightScheme::Q4_0);
  EngineOptions options{path, 2, 64};
  options.gpu_budget = 1ull << 30;
  const GpuMemoryPlan whole = Engine(options).gpu_memory();
  options.gpu_budget = whole.total() - whole.weights / 4;
  options.trace = true;
  uint64_t host_all = 0, host_weights = 0;
  {
    Engine engine(options);
    host_all = engine.tiers()->host_used();
    host_weights = engine.tiers()->host_weight_bytes;
  }
  options.host_budget = host_all - host_weights / 4;
  Engine engine(options);
  std::vector<float> logits(static_cast<size_t>(engine.config().vocab));
  for (int32_t token : {1, 2, 3}) engine.forward().eval(std::span<const int32_t>(&token, 1), logits.data());
  const std::string trace_path = scratch_path("gpu-trace.json");
  engine.trace()->write(trace_path);
  const std::string text = read_bytes_as_text(trace_path);
  for (const char* track : {"disk reads", "uploads (GPU)", "compute (GPU)"})
    EXPECT_NE(text.find(std::string("\"cat\":\"") + track + "\""), std::string::npos) << track << " spans missing";
  EXPECT_NE(text.find("\"layer 3\""), std::string::npos);
  EXPECT_NE(text.find("\"upload blk.0\""), std::string::npos);
}

}  // namespace fi::test
