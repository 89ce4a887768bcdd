#pragma once
// Mixture-of-experts routing of one token, as llama.cpp computes it for softmax-gated models
// (Mixtral, Qwen3-MoE).
#include <cstdint>

namespace fi {

// Softmax over `n` router logits, the `k` most probable experts in descending order (equal
// probabilities: the lower index first; NaN counts as least probable) into `experts`, and their
// probabilities renormalised to sum to one into `weights`.
void route_top_k(const float* logits, int64_t n, int64_t k, int32_t* experts, float* weights);

}  // namespace fi
