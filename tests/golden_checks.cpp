#include "golden_checks.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "gpu_engine_checks.h"
#include "host/engine/engine.h"
#include "test_support.h"

namespace fi::test {

namespace {

nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::vector<float> load_floats(const std::string& path) {
  const std::vector<uint8_t> bytes = read_bytes(path);
  std::vector<float> values(bytes.size() / sizeof(float));
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
  return values;
}

EngineOptions options_for(const std::string& model, const GoldenPlacement& placement) {
  if (placement.cpu_decoded_layers) return cpu_decoded_layers_options(model, 512);
  EngineOptions options{model, 2, 0};
  options.gpu_budget = placement.gpu_budget;
  return options;
}

// Fails the test unless the engine decodes some layers on the CPU when the placement asks for it.
void expect_placement(const Engine& engine, const GoldenPlacement& placement) {
  if (placement.cpu_decoded_layers) {
    ASSERT_TRUE(engine.tiers().has_value());
    EXPECT_GT(engine.tiers()->cpu_layers(), 0);
  }
}

}  // namespace

void check_stories260k_greedy_text(GoldenPlacement placement) {
  const std::string data = shared_data();
  std::ifstream golden_file(data + "/golden/stories260K.greedy-256.txt", std::ios::binary);
  const std::string golden((std::istreambuf_iterator<char>(golden_file)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(golden.empty());

  Engine engine(options_for(data + "/models/stories260K.gguf", placement));
  expect_placement(engine, placement);
  Sampler greedy({0.0f, 40, 1.0f, 0.0f, 1.0f, 64, 0});
  std::vector<int32_t> generated;
  engine.generate(engine.tokenizer().encode("", true, false), 256, greedy, [&](int32_t t) { generated.push_back(t); });
  const std::string text = engine.tokenizer().decode(generated);
  EXPECT_EQ(text.substr(0, golden.size()), golden);
}

void check_stories260k_sentence_nll(GoldenPlacement placement) {
  const std::string data = shared_data();
  const nlohmann::json golden = load_json(data + "/golden/stories260K.nll.json");
  Engine engine(options_for(data + "/models/stories260K.gguf", placement));
  const auto tokens = engine.tokenizer().encode(golden["sentence"].get<std::string>(), true, false);
  ASSERT_EQ(static_cast<int>(tokens.size()), golden["n_tokens"].get<int>());
  const auto vocab = static_cast<size_t>(engine.config().vocab);
  std::vector<float> logits(tokens.size() * vocab);
  engine.forward().eval(tokens, logits.data(), true);
  double nll = 0.0;
  for (size_t i = 0; i + 1 < tokens.size(); ++i) {
    const float* row = &logits[i * vocab];
    const double max_logit = *std::max_element(row, row + vocab);
    double total = 0;
    for (size_t v = 0; v < vocab; ++v) total += std::exp(row[v] - max_logit);
    nll -= row[tokens[i + 1]] - max_logit - std::log(total);
  }
  EXPECT_NEAR(nll, golden["nll"].get<double>(), golden["tolerance"].get<double>());
}

void check_tiny_llama(const TinyCase& tiny, const char* prompt, GoldenPlacement placement) {
  const std::string data = shared_data();
  const std::string stem = data + "/golden/tiny-llama-" + tiny.type + ".prompt-" + prompt;
  const nlohmann::json golden = load_json(stem + ".json");
  Engine engine(options_for(data + "/models/tiny-llama-" + std::string(tiny.type) + ".gguf", placement));
  expect_placement(engine, placement);
  const auto vocab = static_cast<size_t>(engine.config().vocab);
  ASSERT_EQ(vocab, golden["n_vocab"].get<size_t>());

  const auto tokens = engine.tokenizer().encode(golden["prompt"].get<std::string>(), true, false);
  ASSERT_EQ(tokens, golden["prompt_tokens"].get<std::vector<int32_t>>());

  // Teacher-forced: prompt followed by the golden continuation.
  std::vector<int32_t> sequence = tokens;
  const auto greedy = golden["greedy_tokens"].get<std::vector<int32_t>>();
  sequence.insert(sequence.end(), greedy.begin(), greedy.end());
  std::vector<float> logits(sequence.size() * vocab);
  if (placement.cpu_decoded_layers) {
    engine.forward().eval(tokens, logits.data(), true);
    for (size_t i = tokens.size(); i < sequence.size(); ++i)
      engine.forward().eval(std::span<const int32_t>(&sequence[i], 1), logits.data() + i * vocab);
  } else {
    engine.forward().eval(sequence, logits.data(), true);
  }

  const std::vector<float> expected = load_floats(stem + ".logits.f32");
  std::vector<float> ours;
  for (size_t position : golden["logits_positions"].get<std::vector<size_t>>())
    ours.insert(ours.end(), logits.begin() + position * vocab, logits.begin() + (position + 1) * vocab);
  EXPECT_LT(relative_rms(ours, expected), tiny.tolerance);

  size_t mismatches = 0;
  for (size_t i = 0; i < greedy.size(); ++i) {
    const float* row = &logits[(tokens.size() - 1 + i) * vocab];
    mismatches += static_cast<int32_t>(std::max_element(row, row + vocab) - row) != greedy[i];
  }
  // Near-ties may flip one position of a quantized model; F16 must match exactly.
  EXPECT_LE(mismatches, std::string(tiny.type) == "f16" ? 0u : 1u) << "of " << greedy.size() << " greedy tokens";
}

}  // namespace fi::test
