// Offloading changes where bytes live, never the result: for budgets from the minimum working set
// to unlimited, every plan gives logits bit-identical to the fully resident run, under every I/O
// backend, and the arena never passes the budget.
#include <gtest/gtest.h>

#include <cstring>
#include <optional>

#include "host/engine/host_model.h"
#include "io/error.h"
#include "test_support.h"

namespace fi {
namespace {

struct Case {
  const char* name;
  ModelShape shape;
  WeightScheme scheme;
  std::optional<TensorTypeOverride> tensor_type = std::nullopt;  // one tensor role in a type of its own
};

std::vector<TensorTypeOverride> tensor_types(const Case& c) {
  if (c.tensor_type) return {*c.tensor_type};
  return {};
}

const Case kCases[] = {
    {"offload_q4_0", {256, 4, 8, 4, 768, 512, 0, 10000.0, false}, WeightScheme::Q4_0},
    {"offload_q4_k_tied", {256, 3, 8, 2, 512, 512, 0, 10000.0, true}, WeightScheme::Q4_K},
    {"offload_q6_k", {256, 3, 8, 4, 512, 512, 0, 10000.0, false}, WeightScheme::Q6_K},
    {"offload_odd_f32", {72, 3, 6, 3, 100, 512, 0, 10000.0, false}, WeightScheme::F32},
    // The newer families: Llama 3.1's RoPE factors, Qwen2's biases (tied), Qwen3's Q/K norm and
    // wide heads.
    {"offload_llama3_q4_k_m",
     {256, 4, 8, 2, 768, 512, 0, 500000.0, false, "llama", 0, {RopeScaling::Type::Llama3, 8.0, 64, 1, 4}},
     WeightScheme::Q4_K_M},
    {"offload_qwen2_q8_0_tied", {256, 3, 8, 2, 512, 512, 0, 1000000.0, true, "qwen2"}, WeightScheme::Q8_0},
    {"offload_qwen3_q4_0", {256, 3, 4, 2, 512, 512, 0, 1000000.0, false, "qwen3", 128}, WeightScheme::Q4_0},
    // The weight types added with llama.cpp's mixes: Q2_K with Q3_K, Q3_K with Q4_K and Q5_K,
    // IQ4_XS (tied: the embedding in Q6_K), Q5_K with Q6_K, and the 32-element block types.
    {"offload_q2_k", {256, 4, 8, 4, 768, 512, 0, 10000.0, false}, WeightScheme::Q2_K},
    {"offload_q3_k_m", {256, 4, 8, 2, 768, 512, 0, 10000.0, false}, WeightScheme::Q3_K_M},
    {"offload_iq4_xs_tied", {256, 3, 8, 2, 512, 512, 0, 10000.0, true}, WeightScheme::IQ4_XS},
    {"offload_q5_k_m", {256, 3, 8, 4, 512, 512, 0, 10000.0, false}, WeightScheme::Q5_K_M},
    {"offload_q4_1", {256, 3, 8, 4, 512, 512, 0, 10000.0, false}, WeightScheme::Q4_1},
    {"offload_q5_0", {256, 3, 8, 4, 512, 512, 0, 10000.0, false}, WeightScheme::Q5_0},
    {"offload_q5_1", {256, 3, 8, 4, 512, 512, 0, 10000.0, false}, WeightScheme::Q5_1},
    {"offload_iq4_nl", {256, 3, 8, 4, 512, 512, 0, 10000.0, false}, WeightScheme::IQ4_NL},
    // Mixture of experts: the stacked expert tensors split by rows like any matrix (an expert's
    // slice resident, streamed or across the split), interleaved (Q4_K) or not, Qwen3-MoE and Mixtral.
    {"offload_qwen3moe_q4_k_m",
     {256, 3, 4, 2, 512, 512, 0, 1000000.0, false, "qwen3moe", 64, {}, false, 8, 2, 256, 1.0}, WeightScheme::Q4_K_M},
    {"offload_qwen3moe_q8_0_tied",
     {256, 2, 4, 2, 512, 512, 0, 1000000.0, true, "qwen3moe", 64, {}, false, 8, 3, 96, 0.0}, WeightScheme::Q8_0},
    // Many experts of a width the K-quants do not divide: their down projections in Q5_0 and Q8_0.
    {"offload_qwen3moe_q4_k_m_narrow_experts",
     {256, 3, 8, 1, 512, 512, 0, 1000000.0, false, "qwen3moe", 32, {}, false, 16, 4, 96, 1.0}, WeightScheme::Q4_K_M},
    {"offload_mixtral_q4_0", {256, 2, 8, 4, 256, 512, 0, 10000.0, false, "llama", 0, {}, false, 4, 2, 256, 2.0},
     WeightScheme::Q4_0},
    {"offload_odd_experts_f32", {72, 2, 6, 3, 100, 512, 0, 10000.0, false, "qwen3moe", 12, {}, false, 3, 2, 20, 0.5},
     WeightScheme::F32},
    // Quantized experts of 20 rows (never interleaved) split mid-expert by some budgets: computed
    // as row kernels everywhere, in the expert cache too.
    {"offload_odd_experts_q8_0_gate",
     {96, 2, 8, 4, 100, 512, 0, 10000.0, false, "qwen3moe", 12, {}, false, 3, 2, 20, 0.5},
     WeightScheme::F32,
     TensorTypeOverride{Role::FfnGateExps, TensorType::Q8_0}},
    // More experts chosen by the prompt than one parallel section computes: several sections.
    {"offload_many_experts_q4_k_m",
     {256, 2, 4, 2, 256, 512, 0, 10000.0, false, "qwen3moe", 64, {}, false, 40, 4, 256, 0.0}, WeightScheme::Q4_K_M},
    // Experts whose gate and up take activations of different formats (Q8_K for Q4_K, Q8_0 for
    // Q8_0; float for F16), as files quantized with per-tensor types have: two products per step.
    {"offload_qwen3moe_gate_up_differ",
     {256, 3, 4, 2, 512, 512, 0, 1000000.0, false, "qwen3moe", 64, {}, false, 8, 2, 256, 1.0},
     WeightScheme::Q4_K_M,
     TensorTypeOverride{Role::FfnUpExps, TensorType::Q8_0}},
    {"offload_mixtral_gate_up_differ", {256, 2, 8, 4, 256, 512, 0, 10000.0, false, "llama", 0, {}, false, 4, 2, 256, 2.0},
     WeightScheme::Q4_0,
     TensorTypeOverride{Role::FfnGateExps, TensorType::F16}},
};

constexpr int64_t kContext = 32;

// Logits of a 10-token prompt (every position) and of 4 decoded tokens after it.
std::vector<float> run(const std::string& path, std::optional<uint64_t> budget, IoBackend backend = IoBackend::Auto) {
  ThreadPool pool(2);
  HostModelOptions options;
  options.host_budget = budget;
  options.model.context = kContext;
  options.io.backend = backend;
  options.io.request_bytes = 16 << 10;  // small requests: many in flight even for a small model
  const auto model = HostModel::load(path, pool, options);
  Forward forward(model->model(), make_cpu_backend(*model, pool));
  const auto vocab = static_cast<size_t>(model->config().vocab);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 10; ++i) prompt.push_back(static_cast<int32_t>((i * 37 + 3) % static_cast<int>(vocab)));
  std::vector<float> logits(prompt.size() * vocab);
  forward.eval(prompt, logits.data(), true);
  std::vector<float> step(vocab);
  for (int i = 0; i < 4; ++i) {
    const int32_t token = static_cast<int32_t>((i * 101 + 7) % static_cast<int>(vocab));
    forward.eval(std::span<const int32_t>(&token, 1), step.data());
    logits.insert(logits.end(), step.begin(), step.end());
  }
  if (budget) {
    EXPECT_LE(model->plan().host_bytes(), *budget);
    EXPECT_LE(model->arena().used(), *budget) << "arena high-water mark";
    EXPECT_LE(model->arena().used(), *model->arena().capacity());
  }
  return logits;
}

uint64_t minimum_budget(const std::string& path) {
  ThreadPool pool(2);  // scratch grows with the threads
  HostModelOptions options;
  options.model.context = kContext;
  return HostModel::load(path, pool, options)->plan().minimum_host_bytes;
}

uint64_t unlimited_bytes(const std::string& path) {
  ThreadPool pool(2);
  HostModelOptions options;
  options.model.context = kContext;
  options.host_budget = UINT64_MAX / 4;
  return HostModel::load(path, pool, options)->plan().host_bytes();
}

class OffloadTest : public ::testing::TestWithParam<Case> {};

TEST_P(OffloadTest, EveryBudgetGivesBitIdenticalLogits) {
  const Case& c = GetParam();
  const std::string path = test::generated_model(c.name, c.shape, c.scheme, 7, tensor_types(c));
  const std::vector<float> resident = run(path, std::nullopt);
  const uint64_t minimum = minimum_budget(path), everything = unlimited_bytes(path);
  ASSERT_LT(minimum, everything);
  int streamed_plans = 0, cached_plans = 0;
  for (int step = 0; step <= 6; ++step) {
    const uint64_t budget = minimum + (everything - minimum) * static_cast<uint64_t>(step) / 6;
    SCOPED_TRACE("budget " + std::to_string(budget));
    const std::vector<float> logits = run(path, budget);
    ASSERT_EQ(logits.size(), resident.size());
    EXPECT_EQ(0, std::memcmp(logits.data(), resident.data(), logits.size() * sizeof(float)));
    ThreadPool pool(2);
    HostModelOptions options;
    options.model.context = kContext;
    options.host_budget = budget;
    const auto placed = HostModel::load(path, pool, options);
    const Plan& plan = placed->plan();
    if (plan.streams() || plan.caches_experts()) ++streamed_plans;
    if (plan.caches_experts()) ++cached_plans;
  }
  // Experts are read on demand under every budget that cannot hold them all.
  if (c.shape.n_experts > 0) {
    EXPECT_GE(cached_plans, 3);
  }
  EXPECT_GE(streamed_plans, 5) << "most budgets in the sweep must stream or read experts on demand";
}

TEST_P(OffloadTest, EveryBackendStreamsTheSameBytes) {
  const Case& c = GetParam();
  const std::string path = test::generated_model(c.name, c.shape, c.scheme, 7, tensor_types(c));
  const std::vector<float> resident = run(path, std::nullopt);
  const uint64_t budget = minimum_budget(path) + 4096;
  for (IoBackend backend : {IoBackend::Uring, IoBackend::Pread, IoBackend::Mmap}) {
    const std::vector<float> logits = run(path, budget, backend);
    EXPECT_EQ(0, std::memcmp(logits.data(), resident.data(), logits.size() * sizeof(float))) << io_backend_name(backend);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, OffloadTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Offload, BudgetBelowTheMinimumIsRefusedBeforeLoading) {
  const std::string path = test::generated_model(kCases[0].name, kCases[0].shape, kCases[0].scheme);
  const uint64_t minimum = minimum_budget(path);
  ThreadPool pool(2);
  HostModelOptions options;
  options.model.context = kContext;
  options.host_budget = minimum - 4096;
  try {
    HostModel::load(path, pool, options);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("below this model's minimum"), std::string::npos) << error.what();
  }
}

TEST(Offload, StoriesGoldenTextUnderTheMinimumBudget) {
  FI_REQUIRE_SHARED_DATA();
  const std::string path = test::shared_data() + "/models/stories260K.gguf";
  EXPECT_EQ(run(path, minimum_budget(path)), run(path, std::nullopt));
}

}  // namespace
}  // namespace fi
