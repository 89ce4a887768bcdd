#pragma once
// A float64 forward pass of every architecture flexinfer runs, written for clarity and apart from
// the engine: weights read from the file and dequantized to double, RoPE frequencies computed here
// from the metadata, no KV quantization, no batching. The engine is checked against it.
#include <cstdint>
#include <vector>

#include "host/model/model.h"

namespace fi::test {

// Logits (vocab floats per position) for every position of `tokens`, evaluated from position 0.
std::vector<float> reference_logits(const Model& model, const std::vector<int32_t>& tokens);

}  // namespace fi::test
