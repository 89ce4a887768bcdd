#include "host/kernels/routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace fi {

void route_top_k(const float* logits, int64_t n, int64_t k, int32_t* experts, float* weights) {
  thread_local std::vector<float> probabilities;
  thread_local std::vector<int32_t> order;
  probabilities.resize(static_cast<size_t>(n));
  order.resize(static_cast<size_t>(n));
  float max_logit = -INFINITY;
  for (int64_t i = 0; i < n; ++i)
    if (logits[i] > max_logit) max_logit = logits[i];
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    probabilities[i] = std::exp(logits[i] - max_logit);
    total += probabilities[i];
  }
  const auto inverse_total = static_cast<float>(1.0 / total);
  for (float& p : probabilities) p *= inverse_total;

  // A strict order even with NaN (corrupt weights must not break the sort).
  auto key = [](float p) { return std::isnan(p) ? -INFINITY : p; };
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    const float pa = key(probabilities[a]), pb = key(probabilities[b]);
    return pa > pb || (pa == pb && a < b);
  });
  double chosen = 0.0;
  for (int64_t j = 0; j < k; ++j) chosen += probabilities[order[j]];
  // llama.cpp's floor on the sum (the smallest normal half), so it never divides by zero.
  const auto inverse_chosen = static_cast<float>(1.0 / std::max(chosen, 6.103515625e-5));
  for (int64_t j = 0; j < k; ++j) {
    experts[j] = order[j];
    weights[j] = probabilities[order[j]] * inverse_chosen;
  }
}

void BatchRouting::route(const float* logits, int64_t tokens, int64_t n_experts, int64_t k) {
  expert.resize(static_cast<size_t>(tokens * k));
  weight.resize(static_cast<size_t>(tokens * k));
  for (int64_t t = 0; t < tokens; ++t) route_top_k(&logits[t * n_experts], n_experts, k, &expert[t * k], &weight[t * k]);
  // Experts x choices comparisons: little beside the products.
  by_expert.clear();
  begin.clear();
  for (int32_t e = 0; e < n_experts; ++e) {
    begin.push_back(static_cast<int64_t>(by_expert.size()));
    for (size_t choice = 0; choice < expert.size(); ++choice)
      if (expert[choice] == e) by_expert.push_back(static_cast<int32_t>(choice));
  }
  begin.push_back(static_cast<int64_t>(by_expert.size()));
}

}  // namespace fi
