#pragma once
// The end-to-end checks against ../shared/data/golden, shared by the CPU suite (test_golden) and
// the GPU suite (test_gpu), which runs them with every layer on the device.
#include <cstdint>
#include <optional>

namespace fi::test {

struct TinyCase {
  const char* type;
  double tolerance;  // relative RMS of the logits, from ../shared/data/README.md
};
inline constexpr TinyCase kTinyCases[] = {{"f16", 5e-3}, {"q8_0", 5e-2}, {"q4_0", 5e-2}, {"q4_k_m", 5e-2}};

// Where the checks run: on the CPU, every layer on the GPU (within gpu_budget), or on the GPU with
// the last layers decoded on the CPU (tests/gpu_engine_checks.h's budget and profile).
struct GoldenPlacement {
  std::optional<uint64_t> gpu_budget;
  bool cpu_decoded_layers = false;
};

void check_stories260k_greedy_text(GoldenPlacement placement);
void check_stories260k_sentence_nll(GoldenPlacement placement);
// With CPU-decoded layers the golden continuation is fed one token at a time (decode) after the
// prompt (prefill); otherwise prompt and continuation go in one pass.
void check_tiny_llama(const TinyCase& tiny, const char* prompt, GoldenPlacement placement);

}  // namespace fi::test
