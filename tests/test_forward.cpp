// The engine's forward pass against the float64 reference on generated models of several shapes,
// and its invariances: batching and thread count never change the result.
#include <cstring>
#include <optional>

#include "host/engine/engine.h"
#include "io/error.h"
#include "host/engine/host_model.h"
#include "reference_forward.h"
#include "test_support.h"

namespace fi {
namespace {

struct Case {
  const char* name;
  ModelShape shape;
  WeightScheme scheme;
  double tolerance;  // relative RMS of logits vs the float64 reference
  std::optional<TensorTypeOverride> tensor_type = std::nullopt;  // one tensor role in a type of its own
};

std::vector<TensorTypeOverride> tensor_types(const Case& c) {
  if (c.tensor_type) return {*c.tensor_type};
  return {};
}

// F32/F16 models differ from the reference by the half-precision KV cache; quantized ones also by
// the 8-bit activations of the integer dot products.
const Case kCases[] = {
    {"gqa_f32", {64, 2, 4, 2, 96, 512, 0, 10000.0, false}, WeightScheme::F32, 3e-3},
    {"mha_f16", {64, 2, 4, 4, 128, 512, 0, 10000.0, false}, WeightScheme::F16, 3e-3},
    {"tied_f32", {64, 3, 8, 2, 160, 512, 0, 500000.0, true}, WeightScheme::F32, 3e-3},
    {"odd_sizes_f32", {72, 2, 6, 3, 100, 512, 0, 10000.0, false}, WeightScheme::F32, 3e-3},
    {"partial_rope_f32", {64, 2, 4, 2, 96, 512, 8, 10000.0, false}, WeightScheme::F32, 3e-3},
    {"q8_0", {256, 2, 8, 4, 512, 512, 0, 10000.0, false}, WeightScheme::Q8_0, 2e-2},
    {"q4_0", {256, 2, 8, 4, 512, 512, 0, 10000.0, false}, WeightScheme::Q4_0, 5e-2},
    {"q4_k", {256, 2, 8, 2, 512, 512, 0, 10000.0, true}, WeightScheme::Q4_K, 5e-2},
    {"q6_k", {256, 2, 8, 4, 512, 512, 0, 10000.0, false}, WeightScheme::Q6_K, 3e-2},
    // The newer families' operations: biases, NeoX RoPE (partial too), Q/K norm, a head dimension
    // other than dim / heads, RoPE scaling (linear; Llama 3.1's factors as a rope_freqs tensor).
    {"llama_biases_f32", {64, 2, 4, 2, 96, 512, 0, 10000.0, false, "llama", 0, {}, true}, WeightScheme::F32, 3e-3},
    {"llama_head_dim_f32", {64, 2, 4, 2, 96, 512, 0, 10000.0, false, "llama", 24}, WeightScheme::F32, 3e-3},
    {"llama_linear_rope_f32",
     {64, 2, 4, 2, 96, 512, 0, 10000.0, false, "llama", 0, {RopeScaling::Type::Linear, 4.0, 8192, 1, 4}},
     WeightScheme::F32, 3e-3},
    {"llama3_rope_factors_f16",
     {64, 2, 4, 2, 96, 512, 0, 500000.0, false, "llama", 0, {RopeScaling::Type::Llama3, 8.0, 64, 1, 4}},
     WeightScheme::F16, 3e-3},
    {"qwen2_f32", {64, 2, 4, 2, 96, 512, 0, 1000000.0, true, "qwen2"}, WeightScheme::F32, 3e-3},
    {"qwen2_partial_rope_f32", {64, 2, 4, 2, 96, 512, 8, 1000000.0, false, "qwen2"}, WeightScheme::F32, 3e-3},
    {"qwen3_f16", {64, 2, 4, 2, 96, 512, 0, 1000000.0, false, "qwen3", 32}, WeightScheme::F16, 3e-3},
    {"qwen3_q4_k", {256, 2, 4, 2, 512, 512, 0, 1000000.0, true, "qwen3", 128}, WeightScheme::Q4_K, 5e-2},
    {"qwen2_q8_0", {256, 2, 8, 2, 512, 512, 0, 1000000.0, false, "qwen2"}, WeightScheme::Q8_0, 2e-2},
    // Mixture of experts: routing, the chosen experts' slices, their weighted sum (Qwen3-MoE's Q/K
    // norm; Mixtral's llama layout with its feed_forward_length the experts' width).
    {"qwen3moe_f32", {64, 2, 4, 2, 96, 512, 0, 1000000.0, false, "qwen3moe", 32, {}, false, 6, 2, 40, 1.0},
     WeightScheme::F32, 3e-3},
    {"qwen3moe_f16_eight_chosen", {64, 2, 4, 2, 96, 512, 0, 1000000.0, true, "qwen3moe", 16, {}, false, 16, 8, 24, 2.0},
     WeightScheme::F16, 3e-3},
    {"mixtral_f32", {64, 2, 4, 2, 96, 512, 0, 10000.0, false, "llama", 0, {}, false, 4, 2, 96, 1.0}, WeightScheme::F32, 3e-3},
    {"qwen3moe_q8_0", {256, 2, 4, 2, 512, 512, 0, 1000000.0, false, "qwen3moe", 64, {}, false, 8, 2, 256, 2.0},
     WeightScheme::Q8_0, 2e-2},
    // Gate and up of different activation formats (per-tensor types): quantized twice per step.
    {"qwen3moe_gate_q4_k_up_q8_0", {256, 2, 4, 2, 512, 512, 0, 1000000.0, false, "qwen3moe", 64, {}, false, 8, 2, 256, 2.0},
     WeightScheme::Q4_K, 5e-2, TensorTypeOverride{Role::FfnUpExps, TensorType::Q8_0}},
    {"mixtral_gate_f16_up_q4_0", {256, 2, 8, 4, 256, 512, 0, 10000.0, false, "llama", 0, {}, false, 4, 2, 256, 1.0},
     WeightScheme::Q4_0, 5e-2, TensorTypeOverride{Role::FfnGateExps, TensorType::F16}},
};

class ForwardTest : public ::testing::TestWithParam<Case> {};

std::unique_ptr<HostModel> load(const std::string& path, ThreadPool& pool, int64_t context, int64_t max_batch = 256,
                                int64_t sequences = 1) {
  HostModelOptions options;
  options.model.context = context;
  options.model.max_batch = max_batch;
  options.model.sequences = sequences;
  return HostModel::load(path, pool, options);
}

std::vector<int32_t> some_tokens(int64_t vocab, size_t count) {
  std::vector<int32_t> tokens;
  for (size_t i = 0; i < count; ++i) tokens.push_back(static_cast<int32_t>((i * 97 + 1) % static_cast<size_t>(vocab)));
  return tokens;
}

TEST_P(ForwardTest, MatchesFloat64Reference) {
  const Case& c = GetParam();
  const std::string path = test::generated_model(c.name, c.shape, c.scheme, 7, tensor_types(c));
  Engine engine({path, 2, 64});
  const auto tokens = some_tokens(engine.config().vocab, 12);
  std::vector<float> logits(tokens.size() * engine.config().vocab);
  engine.forward().eval(tokens, logits.data(), true);
  const std::vector<float> expected = test::reference_logits(engine.model(), tokens);
  EXPECT_LT(test::relative_rms(logits, expected), c.tolerance) << c.name;
}

TEST_P(ForwardTest, BatchedPrefillEqualsTokenByTokenBitForBit) {
  const Case& c = GetParam();
  const std::string path = test::generated_model(c.name, c.shape, c.scheme, 7, tensor_types(c));
  ThreadPool pool(2);
  const auto model = load(path, pool, 32);
  const auto tokens = some_tokens(model->config().vocab, 9);
  const auto vocab = static_cast<size_t>(model->config().vocab);

  Forward batched(model->model(), make_cpu_backend(*model, pool));
  std::vector<float> all(tokens.size() * vocab);
  batched.eval(tokens, all.data(), true);

  Forward single(model->model(), make_cpu_backend(*model, pool));
  std::vector<float> one(vocab);
  for (size_t t = 0; t < tokens.size(); ++t) {
    single.eval(std::span<const int32_t>(&tokens[t], 1), one.data());
    ASSERT_EQ(0, std::memcmp(one.data(), &all[t * vocab], vocab * sizeof(float))) << "position " << t;
  }
}

// Sequences sharing passes (prompts beside prompts, a prompt beside decode tokens, decode tokens of
// every sequence, a slot rewound and reused) give each sequence the logits it gets alone.
TEST_P(ForwardTest, SequencesSharingPassesEqualEachAloneBitForBit) {
  const Case& c = GetParam();
  const std::string path = test::generated_model(c.name, c.shape, c.scheme, 7, tensor_types(c));
  ThreadPool pool(2);
  const auto shared = load(path, pool, 16, 256, 3);
  const auto alone = load(path, pool, 16);
  const auto vocab = static_cast<size_t>(shared->config().vocab);
  const auto tokens = some_tokens(shared->config().vocab, 40);
  auto piece = [&](size_t first, size_t count) { return std::span<const int32_t>(tokens).subspan(first, count); };

  // Per pass: (sequence, first token, count, logits wanted); sequence 1 is rewound before pass 4.
  struct Step {
    int64_t sequence;
    size_t first, count;
    bool logits;
  };
  const std::vector<std::vector<Step>> passes = {
      {{0, 0, 5, true}, {1, 5, 3, false}},
      {{2, 8, 7, true}, {0, 15, 1, true}, {1, 16, 2, true}},
      {{1, 18, 1, true}, {0, 19, 1, true}, {2, 20, 1, true}},
      {{1, 21, 6, true}, {2, 27, 1, false}},
      {{2, 28, 1, true}, {1, 29, 1, true}},
  };
  Forward together(shared->model(), make_cpu_backend(*shared, pool));
  std::vector<std::vector<int32_t>> history(3);
  std::vector<float> logits(3 * vocab), expected(vocab);
  for (size_t p = 0; p < passes.size(); ++p) {
    if (p == 3) {
      together.rewind(0, 1);
      history[1].clear();
    }
    std::vector<SequenceChunk> chunks;
    for (const Step& step : passes[p]) chunks.push_back({step.sequence, piece(step.first, step.count), step.logits});
    together.eval_together(chunks, logits.data());
    size_t row = 0;
    for (const Step& step : passes[p]) {
      auto& seen = history[static_cast<size_t>(step.sequence)];
      seen.insert(seen.end(), tokens.begin() + static_cast<std::ptrdiff_t>(step.first),
                  tokens.begin() + static_cast<std::ptrdiff_t>(step.first + step.count));
      ASSERT_EQ(together.position(step.sequence), static_cast<int64_t>(seen.size()));
      if (!step.logits) continue;
      Forward single(alone->model(), make_cpu_backend(*alone, pool));
      single.eval(seen, expected.data());
      ASSERT_EQ(0, std::memcmp(expected.data(), &logits[row * vocab], vocab * sizeof(float)))
          << "pass " << p << " sequence " << step.sequence;
      ++row;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ForwardTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Forward, ThreadCountDoesNotChangeLogits) {
  const std::string path = test::generated_model("q4_0", kCases[6].shape, kCases[6].scheme);
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    const auto model = load(path, pool, 16);
    const auto tokens = some_tokens(model->config().vocab, 6);
    Forward forward(model->model(), make_cpu_backend(*model, pool));
    results.emplace_back(tokens.size() * model->config().vocab);
    forward.eval(tokens, results.back().data(), true);
  }
  EXPECT_EQ(results[0], results[1]);
  EXPECT_EQ(results[0], results[2]);
}

TEST(Forward, PromptLongerThanOneBatchIsSplit) {
  const std::string path = test::generated_model("gqa_f32", kCases[0].shape, kCases[0].scheme);
  ThreadPool pool(2);
  const auto model = load(path, pool, 32, 64);
  const auto in_pieces = load(path, pool, 32, 4);
  const auto tokens = some_tokens(model->config().vocab, 11);
  const auto vocab = static_cast<size_t>(model->config().vocab);
  Forward whole(model->model(), make_cpu_backend(*model, pool));
  Forward pieces(in_pieces->model(), make_cpu_backend(*in_pieces, pool));
  std::vector<float> a(tokens.size() * vocab), b(tokens.size() * vocab);
  whole.eval(tokens, a.data(), true);
  pieces.eval(tokens, b.data(), true);
  EXPECT_EQ(a, b);
}

TEST(Forward, RejectsContextOverflowAndBadTokens) {
  const std::string path = test::generated_model("gqa_f32", kCases[0].shape, kCases[0].scheme);
  ThreadPool pool(1);
  const auto model = load(path, pool, 4);
  Forward forward(model->model(), make_cpu_backend(*model, pool));
  std::vector<float> logits(model->config().vocab);
  const std::vector<int32_t> five = {1, 2, 3, 4, 5};
  EXPECT_THROW(forward.eval(five, logits.data()), Error);
  const std::vector<int32_t> bad = {static_cast<int32_t>(model->config().vocab)};
  EXPECT_THROW(forward.eval(bad, logits.data()), Error);
  // A sequence that does not exist, or one twice in a pass.
  const std::vector<int32_t> one = {1};
  const SequenceChunk elsewhere[] = {{1, one, true}};
  EXPECT_THROW(forward.eval_together(elsewhere, logits.data()), Error);
  const auto two = load(path, pool, 4, 256, 2);
  Forward pair(two->model(), make_cpu_backend(*two, pool));
  const SequenceChunk twice[] = {{0, one, false}, {0, one, true}};
  EXPECT_THROW(pair.eval_together(twice, logits.data()), Error);
}

}  // namespace
}  // namespace fi
