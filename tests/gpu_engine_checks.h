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
// One byte under the device minimum is refused, naming the minimum and its parts; at the minimum
// the engine loads and the device memory it takes stays within the budget.
void check_gpu_budget();

}  // namespace fi::test
