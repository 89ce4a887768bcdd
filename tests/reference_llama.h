#pragma once
// A float64 llama forward pass, written for clarity: weights dequantized to double, no KV
// quantization, no batching tricks. The engine is checked against it.
#include <cstdint>
#include <vector>

#include "host/model/llama_model.h"

namespace fi::test {

// Logits (vocab floats per position) for every position of `tokens`, evaluated from position 0.
std::vector<float> reference_logits(const LlamaModel& model, const std::vector<int32_t>& tokens);

}  // namespace fi::test
