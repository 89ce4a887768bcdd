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

// gpu_budget: none runs on the CPU.
void check_stories260k_greedy_text(std::optional<uint64_t> gpu_budget);
void check_stories260k_sentence_nll(std::optional<uint64_t> gpu_budget);
void check_tiny_llama(const TinyCase& tiny, const char* prompt, std::optional<uint64_t> gpu_budget);

}  // namespace fi::test
