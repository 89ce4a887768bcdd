#include "gpu_engine_checks.h"

#include "cuda/runtime.h"
#include "host/engine.h"
#include "io/error.h"
#include "test_support.h"

namespace fi::test {

namespace {

std::vector<float> run_engine(const std::string& path, std::optional<uint64_t> gpu_budget) {
  EngineOptions options{path, 2, 64};
  options.gpu_budget = gpu_budget;
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
  options.gpu_budget = needed - 1;
  try {
    Engine engine(options);
    FAIL() << "a budget one byte short was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("is below the"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("KV cache"), std::string::npos) << error.what();
  }
  options.gpu_budget = needed;
  uint64_t free_before = 0, free_after = 0, total = 0;
  cuda::device_memory(&free_before, &total);
  Engine engine(options);
  cuda::device_memory(&free_after, &total);
  // cudaMalloc rounds to its 2 MiB pages; cuBLAS keeps a little of its own beside our workspace.
  EXPECT_LE(free_before - free_after, needed + (64ull << 20));
}

}  // namespace fi::test
