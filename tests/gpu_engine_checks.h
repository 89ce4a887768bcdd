#pragma once
// The engine with every layer on the GPU, checked against the CPU engine and against the budget;
// shared by test_gpu (a real device) and test_gpu_reference (host memory standing in for one).
#include <optional>
#include <string>
#include <vector>

#include "tools/model_maker.h"

namespace fi::test {

// The CPU quantizes activations to 8 bits for quantized weights and the GPU does not, so the
// tolerance (relative RMS of the logits) is the goldens': 5e-3 for float weights, 5e-2 for
// quantized ones.
struct EngineCase {
  const char* name;
  WeightScheme scheme;
  double tolerance;
  bool tied;
};
inline constexpr EngineCase kEngineCases[] = {
    {"f32", WeightScheme::F32, 5e-3, false},   {"f16", WeightScheme::F16, 5e-3, false},
    {"q8_0", WeightScheme::Q8_0, 5e-2, false}, {"q4_0", WeightScheme::Q4_0, 5e-2, true},
    {"q4_k_m", WeightScheme::Q4_K_M, 5e-2, false}, {"q6_k", WeightScheme::Q6_K, 5e-2, false}};

// A 10-token prefill (the cuBLAS path) and 4 decode steps (the matrix-vector kernels) on the GPU
// and on the CPU, every position's logits compared.
void check_gpu_logits_match_cpu(const EngineCase& engine_case);
// One byte under what the whole model needs splits it over the tiers within the budget; far too
// little is refused, naming the minimums; at the whole model's need everything is resident and
// the device memory taken stays within the budget.
void check_gpu_budget();
// Budgets that split the model over VRAM, pinned host memory and disk (every layer still on the
// GPU) give logits bit-identical to the fully resident run, and keep both budgets.
void check_gpu_tiers_bit_identical(WeightScheme scheme);
// With a trace, a split run records disk reads, uploads and GPU compute per layer.
void check_gpu_trace();

}  // namespace fi::test
