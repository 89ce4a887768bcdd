#pragma once
// Mixture-of-experts routing of one token, as llama.cpp computes it for softmax-gated models
// (Mixtral, Qwen3-MoE).
#include <cstdint>
#include <span>
#include <vector>

namespace fi {

// Softmax over `n` router logits, the `k` most probable experts in descending order (equal
// probabilities: the lower index first; NaN counts as least probable) into `experts`, and their
// probabilities renormalised to sum to one into `weights`.
void route_top_k(const float* logits, int64_t n, int64_t k, int32_t* experts, float* weights);

// A batch's routing: each token's k choices (choice t * k + j: an expert and its weight), and the
// choices grouped by expert, in token order within each, so that each chosen expert computes once
// for all its tokens.
struct BatchRouting {
  std::vector<int32_t> expert;
  std::vector<float> weight;
  std::vector<int32_t> by_expert;  // choice indices, expert e's in [begin[e], begin[e + 1])
  std::vector<int64_t> begin;

  // `logits`: tokens rows of n_experts router logits.
  void route(const float* logits, int64_t tokens, int64_t n_experts, int64_t k);
  std::span<const int32_t> choices_of(int32_t e) const {
    return {by_expert.data() + begin[static_cast<size_t>(e)],
            static_cast<size_t>(begin[static_cast<size_t>(e) + 1] - begin[static_cast<size_t>(e)])};
  }
};

}  // namespace fi
