#include "golden_checks.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "gpu_engine_checks.h"
#include "host/engine/engine.h"
#include "host/gpu/gpu_backend.h"
#include "host/engine/host_model.h"
#include "reference_forward.h"
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
  EngineOptions options{model, 2, 512};
  options.gpu_budget = placement.gpu_budget;
  if (placement.experts_beside_gpu) {
    ModelOptions opened;
    opened.context = options.context;
    options.gpu_budget = gpu_memory_plan(*Model::open(model, opened), GpuExperts::OnCpu).total();
  }
  if (placement.minimum_host_budget) {
    ThreadPool pool(options.threads);
    HostModelOptions host;
    host.model.context = options.context;
    options.host_budget = HostModel::load(model, pool, host)->plan().minimum_host_bytes;
  }
  return options;
}

const char* placement_name(const GoldenPlacement& placement) {
  if (placement.cpu_decoded_layers) return "GPU with CPU-decoded layers";
  if (placement.experts_beside_gpu) return "GPU with the experts on the CPU";
  if (placement.gpu_budget) return "GPU";
  return placement.minimum_host_budget ? "CPU at the minimum --host-mem" : "CPU";
}

// 64-bit FNV-1a of a file: the goldens name the exact bytes of the model they were computed on.
uint64_t fnv1a64(const std::vector<uint8_t>& bytes) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (uint8_t byte : bytes) hash = (hash ^ byte) * 0x100000001b3ull;
  return hash;
}

// Fails the test unless the engine decodes some layers on the CPU when the placement asks for it.
void expect_placement(const Engine& engine, const GoldenPlacement& placement) {
  if (placement.experts_beside_gpu) {
    EXPECT_NE(engine.host_model(), nullptr) << "the experts stay on the CPU";
  } else if (placement.gpu_budget && engine.config().has_experts()) {
    EXPECT_EQ(engine.host_model(), nullptr) << "every expert in VRAM";
  }
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

namespace {

// Router logits this close (the last expert chosen and the next, in the float64 reference) are a
// routing near-tie: on the quantized fixtures llama.cpp chose otherwise at gaps up to 0.04.
constexpr double kRoutingTieMargin = 0.05;

// The golden's prompt (tokens as llama.cpp made them) and its greedy continuation, teacher-forced;
// the stored positions' logits within `tolerance` (relative RMS), the greedy tokens as the
// engine's argmax (exactly for float weights).
void check_golden(const std::string& model, const std::string& stem, double tolerance, bool exact_greedy,
                  const GoldenPlacement& placement) {
  const nlohmann::json golden = load_json(stem + ".json");
  Engine engine(options_for(model, placement));
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

  // Mixture of experts: where the router nearly chose other experts (in the float64 reference the
  // last chosen expert's logit within kRoutingTieMargin of the next), llama.cpp's 8-bit activations
  // may tip the choice the other way, and that position follows other experts. A quantized
  // model's position that differs by more than the tolerance is let off only at such a routing
  // near-tie (reported, at most a quarter of the positions); every other position is compared.
  std::vector<double> margins(sequence.size(), INFINITY);
  if (engine.config().has_experts() && !exact_greedy) reference_logits(engine.model(), sequence, &margins);
  auto routing_tie = [&](size_t position) { return margins[position] < kRoutingTieMargin; };

  const std::vector<float> expected = load_floats(stem + ".logits.f32");
  const auto positions = golden["logits_positions"].get<std::vector<size_t>>();
  std::vector<float> ours, ours_decided, expected_decided;
  size_t routing_ties = 0;
  for (size_t i = 0; i < positions.size(); ++i) {
    const auto row = logits.begin() + static_cast<std::ptrdiff_t>(positions[i] * vocab);
    const auto golden_row = expected.begin() + static_cast<std::ptrdiff_t>(i * vocab);
    ours.insert(ours.end(), row, row + static_cast<std::ptrdiff_t>(vocab));
    if (routing_tie(positions[i]) && relative_rms(std::vector<float>(row, row + static_cast<std::ptrdiff_t>(vocab)),
                                                  std::vector<float>(golden_row, golden_row + static_cast<std::ptrdiff_t>(vocab))) > tolerance) {
      ++routing_ties;
      continue;
    }
    ours_decided.insert(ours_decided.end(), row, row + static_cast<std::ptrdiff_t>(vocab));
    expected_decided.insert(expected_decided.end(), golden_row, golden_row + static_cast<std::ptrdiff_t>(vocab));
  }
  const double error = relative_rms(ours_decided, expected_decided);
  EXPECT_LT(error, tolerance);
  EXPECT_LE(routing_ties * 4, positions.size()) << "positions let off at routing near-ties: at most a quarter";
  if (routing_ties == 0) {
    std::printf("golden %s on %s: relative RMS %.2e\n", stem.substr(stem.rfind('/') + 1).c_str(),
                placement_name(placement), error);
  } else {
    std::printf("golden %s on %s: relative RMS %.2e (%.2e with the %zu of %zu positions that took other experts at "
                "routing near-ties)\n",
                stem.substr(stem.rfind('/') + 1).c_str(), placement_name(placement), error,
                relative_rms(ours, expected), routing_ties, positions.size());
  }

  // A quantized model's logits differ from llama.cpp's by its 8-bit activations (on average the
  // relative RMS above, single logits several times that): a greedy token may flip only where the
  // top two logits are within 8 typical differences (random weights give many such near-ties). F16
  // must match exactly.
  size_t mismatches = 0, near_ties = 0;
  for (size_t i = 0; i < greedy.size(); ++i) {
    const float* row = &logits[(tokens.size() - 1 + i) * vocab];
    const auto top = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
    if (top == greedy[i]) continue;
    double squares = 0.0;
    for (size_t v = 0; v < vocab; ++v) squares += static_cast<double>(row[v]) * row[v];
    const double typical_difference = error * std::sqrt(squares / static_cast<double>(vocab));
    const bool near_tie =
        row[top] - row[greedy[i]] <= 8.0 * typical_difference || routing_tie(tokens.size() - 1 + i);
    ++(near_tie ? near_ties : mismatches);
    if (!near_tie)
      ADD_FAILURE() << "greedy token " << i << ": " << top << " instead of " << greedy[i] << ", logits apart by "
                    << row[top] - row[greedy[i]] << " where the typical difference from the golden is "
                    << typical_difference;
  }
  EXPECT_EQ(mismatches, 0u) << "of " << greedy.size() << " greedy tokens differ by more than a near-tie";
  if (exact_greedy) {
    EXPECT_EQ(near_ties, 0u) << "of " << greedy.size() << " greedy tokens flipped at near-ties";
  }
}

// A mixture of experts against its golden: as check_golden, or, for quantized weights beside a GPU,
// against the float64 reference.
void check_moe_files(const std::string& model, const std::string& stem, double tolerance, bool float_weights,
                     GoldenPlacement placement) {
  if (!(placement.gpu_budget || placement.experts_beside_gpu) || float_weights) {
    check_golden(model, stem, tolerance, float_weights, placement);
    return;
  }
  // Quantized weights beside a GPU: its attention multiplies float activations, not llama.cpp's
  // 8-bit ones, so routing near-ties tip otherwise than llama.cpp's (on these fixtures half the
  // positions of a prompt can follow other experts). Compared with the float64 reference instead,
  // on the golden's teacher-forced sequence, every position, with the same near-tie rule: the
  // experts' 8-bit activations on the CPU may still tip a near-tie away from the reference.
  const nlohmann::json golden = load_json(stem + ".json");
  Engine engine(options_for(model, placement));
  expect_placement(engine, placement);
  std::vector<int32_t> sequence = engine.tokenizer().encode(golden["prompt"].get<std::string>(), true, false);
  const auto greedy = golden["greedy_tokens"].get<std::vector<int32_t>>();
  sequence.insert(sequence.end(), greedy.begin(), greedy.end());
  const auto vocab = static_cast<std::ptrdiff_t>(engine.config().vocab);
  std::vector<float> logits(sequence.size() * static_cast<size_t>(vocab));
  engine.forward().eval(sequence, logits.data(), true);
  std::vector<double> margins;
  const std::vector<float> reference = reference_logits(engine.model(), sequence, &margins);
  std::vector<float> ours_decided, reference_decided;
  size_t routing_ties = 0;
  for (size_t i = 0; i < sequence.size(); ++i) {
    const std::vector<float> row(logits.begin() + static_cast<std::ptrdiff_t>(i) * vocab,
                                 logits.begin() + static_cast<std::ptrdiff_t>(i + 1) * vocab);
    const std::vector<float> expected(reference.begin() + static_cast<std::ptrdiff_t>(i) * vocab,
                                      reference.begin() + static_cast<std::ptrdiff_t>(i + 1) * vocab);
    if (margins[i] < kRoutingTieMargin && relative_rms(row, expected) > tolerance) {
      ++routing_ties;
      continue;
    }
    ours_decided.insert(ours_decided.end(), row.begin(), row.end());
    reference_decided.insert(reference_decided.end(), expected.begin(), expected.end());
  }
  const double error = relative_rms(ours_decided, reference_decided);
  EXPECT_LT(error, tolerance);
  EXPECT_LE(routing_ties * 4, sequence.size()) << "positions let off at routing near-ties: at most a quarter";
  std::printf("%s on %s: relative RMS %.2e against the float64 reference (%.2e with the %zu of %zu positions "
              "that took other experts at routing near-ties)\n",
              stem.substr(stem.rfind('/') + 1).c_str(), placement_name(placement), error, relative_rms(logits, reference),
              routing_ties, sequence.size());
}

std::string family_golden_stem(const FamilyCase& family, const char* prompt) {
  return source_dir() + "/tests/data/golden/" + family.preset + "-" + family.type + ".prompt-" + prompt;
}

// The model make-model writes for `family`, after checking that it is the golden's file bit for bit
// (empty, with a failure, when not).
std::string family_model(const FamilyCase& family, const std::string& stem) {
  const nlohmann::json made = load_json(stem + ".json")["model"];
  const std::string model = preset_model(family.preset, family.type);
  const std::vector<uint8_t> bytes = read_bytes(model);
  char fingerprint[17];
  std::snprintf(fingerprint, sizeof fingerprint, "%016llx", static_cast<unsigned long long>(fnv1a64(bytes)));
  if (bytes.size() != made["bytes"].get<size_t>()) {
    ADD_FAILURE() << "make-model " << made["make_model"].get<std::string>()
                  << " no longer writes the file the golden was computed on; remake the goldens "
                     "(tests/data/golden/README.md)";
    return "";
  }
  if (std::string(fingerprint) != made["fnv1a64"].get<std::string>()) {
    ADD_FAILURE() << "make-model " << made["make_model"].get<std::string>() << " writes other bytes than the golden's model";
    return "";
  }
  return model;
}

}  // namespace

void check_tiny_llama(const TinyCase& tiny, const char* prompt, GoldenPlacement placement) {
  const std::string data = shared_data();
  check_golden(data + "/models/tiny-llama-" + std::string(tiny.type) + ".gguf",
               data + "/golden/tiny-llama-" + tiny.type + ".prompt-" + prompt, tiny.tolerance,
               std::string(tiny.type) == "f16", placement);
}

void check_moe_golden(const MoeCase& moe, const char* prompt, GoldenPlacement placement) {
  const std::string data = shared_data();
  const std::string name = std::string(moe.model) + "-" + moe.type;
  check_moe_files(data + "/models/" + name + ".gguf", data + "/golden/" + name + ".prompt-" + prompt, moe.tolerance,
                  std::string(moe.type) == "f16", placement);
}

void check_family_golden(const FamilyCase& family, const char* prompt, GoldenPlacement placement) {
  const std::string stem = family_golden_stem(family, prompt);
  const std::string model = family_model(family, stem);
  if (model.empty()) return;
  check_golden(model, stem, family.tolerance, std::string(family.type) == "f16", placement);
}

void check_moe_family_golden(const FamilyCase& family, const char* prompt, GoldenPlacement placement) {
  const std::string stem = family_golden_stem(family, prompt);
  const std::string model = family_model(family, stem);
  if (model.empty()) return;
  check_moe_files(model, stem, family.tolerance, std::string(family.type) == "f16", placement);
}

}  // namespace fi::test
