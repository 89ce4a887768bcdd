#pragma once
// The end-to-end checks against ../shared/data/golden, shared by the CPU suite (test_golden) and
// the GPU suite (test_gpu), which runs them with every layer on the device.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

namespace fi::test {

struct TinyCase {
  const char* type;
  double tolerance;  // relative RMS of the logits, from ../shared/data/README.md
};
inline constexpr TinyCase kTinyCases[] = {{"f16", 5e-3}, {"q8_0", 5e-2}, {"q4_0", 5e-2}, {"q4_k_m", 5e-2}};

// Where the checks run: on the CPU, every layer on the GPU (within gpu_budget), or on the GPU with
// the last layers decoded on the CPU (tests/gpu_engine_checks.h's budget and profile); on the CPU
// optionally with --host-mem at the model's minimum (most weights streamed).
struct GoldenPlacement {
  std::optional<uint64_t> gpu_budget;
  bool cpu_decoded_layers = false;
  bool minimum_host_budget = false;
  bool experts_beside_gpu = false;  // the smallest --gpu-mem for the dense half: experts on the CPU
};

void check_stories260k_greedy_text(GoldenPlacement placement);
void check_stories260k_sentence_nll(GoldenPlacement placement);
// With CPU-decoded layers the golden continuation is fed one token at a time (decode) after the
// prompt (prefill); otherwise prompt and continuation go in one pass.
void check_tiny_llama(const TinyCase& tiny, const char* prompt, GoldenPlacement placement);

// The mixture-of-experts models of ../shared/data (llama.cpp's goldens, same format and tolerances).
struct MoeCase {
  const char* model;  // models/<model>-<type>.gguf
  const char* type;
  double tolerance;
};
inline constexpr MoeCase kMoeCases[] = {{"tiny-qwen3moe", "f16", 5e-3},
                                        {"tiny-qwen3moe", "q8_0", 5e-2},
                                        {"tiny-qwen3moe", "q4_k_m", 5e-2},
                                        {"tiny-mixtral", "f16", 5e-3},
                                        {"tiny-mixtral", "q4_0", 5e-2}};
void check_moe_golden(const MoeCase& moe, const char* prompt, GoldenPlacement placement);
inline std::string moe_case_name(const ::testing::TestParamInfo<std::tuple<MoeCase, const char*>>& info) {
  std::string name = std::string(std::get<0>(info.param).model) + "_" + std::get<0>(info.param).type + "_prompt_" +
                     std::get<1>(info.param);
  for (char& c : name)
    if (c == '-') c = '_';
  return name;
}

// Goldens computed by llama.cpp for models make-model writes (tests/data/golden/README.md): one per
// family preset and weight type, the model regenerated here bit for bit.
struct FamilyCase {
  const char* preset;  // make-model preset
  const char* type;    // make-model --type
  double tolerance;
};
inline constexpr FamilyCase kFamilyCases[] = {
    {"tiny-llama3", "f16", 5e-3}, {"tiny-llama3", "q8_0", 5e-2}, {"tiny-llama3", "q4_k_m", 5e-2},
    {"tiny-qwen2", "f16", 5e-3},  {"tiny-qwen2", "q8_0", 5e-2},  {"tiny-qwen2", "q4_k_m", 5e-2},
    {"tiny-qwen3", "f16", 5e-3},  {"tiny-qwen3", "q8_0", 5e-2},  {"tiny-qwen3", "q4_k_m", 5e-2},
    // The weight types of big models squeezed small, in files of tiny-llama's shape.
    {"tiny", "q4_1", 5e-2},       {"tiny", "q5_0", 5e-2},       {"tiny", "q5_1", 5e-2},
    {"tiny", "q2_k", 5e-2},       {"tiny", "q3_k_m", 5e-2},     {"tiny", "q5_k_m", 5e-2},
    {"tiny", "iq4_nl", 5e-2},     {"tiny", "iq4_xs", 5e-2}};
void check_family_golden(const FamilyCase& family, const char* prompt, GoldenPlacement placement);
// Mixtures of experts of other shapes than ../shared/data's: many experts with four chosen and one
// chosen of eight, widths whose down projections fall back from the K-quants to Q5_0 and Q8_0.
inline constexpr FamilyCase kMoeFamilyCases[] = {{"tiny-qwen3moe-wide", "f16", 5e-3},
                                                 {"tiny-qwen3moe-wide", "q4_k_m", 5e-2},
                                                 {"tiny-mixtral-top1", "f16", 5e-3},
                                                 {"tiny-mixtral-top1", "q4_k_m", 5e-2}};
// Checked as check_moe_golden checks ../shared/data's.
void check_moe_family_golden(const FamilyCase& family, const char* prompt, GoldenPlacement placement);
inline std::string family_case_name(const ::testing::TestParamInfo<std::tuple<FamilyCase, const char*>>& info) {
  std::string name = std::string(std::get<0>(info.param).preset) + "_" + std::get<0>(info.param).type + "_prompt_" +
                     std::get<1>(info.param);
  for (char& c : name)
    if (c == '-' || c == '.') c = '_';
  return name;
}

}  // namespace fi::test
