#pragma once
// A float64 forward pass of every architecture flexinfer runs, written for clarity and apart from
// the engine: weights read from the file and dequantized to double, RoPE frequencies computed here
// from the metadata, no KV quantization, no batching. The engine is checked against it.
#include <cstdint>
#include <vector>

#include "host/model/model.h"

namespace fi::test {

// Logits (vocab floats per position) for every position of `tokens`, evaluated from position 0.
// For a mixture-of-experts model, routing_margins (when given) receives per position the smallest
// gap, over the layers, between the router logits of the last expert chosen and the first one not
// chosen: how close the routing came to choosing otherwise.
std::vector<float> reference_logits(const Model& model, const std::vector<int32_t>& tokens,
                                    std::vector<double>* routing_margins = nullptr);

}  // namespace fi::test
