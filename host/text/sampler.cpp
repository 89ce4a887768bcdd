#include "host/text/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace fi {

Sampler::Sampler(const SamplerParams& params) : params_(params), rng_(params.seed) {}

int32_t Sampler::sample(float* logits, int32_t n_vocab, const std::vector<int32_t>& history) {
  const bool penalties =
      params_.repeat_penalty != 1.0f || params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f;
  if (penalties && params_.repeat_last_n > 0) {
    const size_t window = std::min(history.size(), static_cast<size_t>(params_.repeat_last_n));
    std::unordered_map<int32_t, int> seen;
    for (auto it = history.end() - static_cast<std::ptrdiff_t>(window); it != history.end(); ++it) ++seen[*it];
    for (const auto& [token, count] : seen) {
      if (token < 0 || token >= n_vocab) continue;
      float& logit = logits[token];
      logit = logit > 0 ? logit / params_.repeat_penalty : logit * params_.repeat_penalty;
      logit -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(count);
    }
  }
  if (params_.temperature <= 0.0f)
    return static_cast<int32_t>(std::max_element(logits, logits + n_vocab) - logits);

  candidates_.resize(static_cast<size_t>(n_vocab));
  for (int32_t id = 0; id < n_vocab; ++id) candidates_[id] = {id, logits[id]};
  auto by_logit = [](const Candidate& a, const Candidate& b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); };
  size_t kept = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < kept) {
    kept = static_cast<size_t>(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(kept), candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  candidates_.resize(kept);

  // Probabilities at temperature 1 decide top-p and min-p, as llama.cpp does.
  std::vector<double> probabilities(kept);
  const double max_logit = candidates_[0].logit;
  double total = 0.0;
  for (size_t i = 0; i < kept; ++i) total += probabilities[i] = std::exp(candidates_[i].logit - max_logit);
  for (double& p : probabilities) p /= total;
  if (params_.top_p < 1.0f) {
    double cumulative = 0.0;
    size_t last = 0;
    for (; last < kept; ++last) {
      cumulative += probabilities[last];
      if (cumulative >= params_.top_p) break;
    }
    kept = std::min(kept, last + 1);
  }
  if (params_.min_p > 0.0f) {
    size_t keep_min = 1;
    while (keep_min < kept && probabilities[keep_min] >= params_.min_p * probabilities[0]) ++keep_min;
    kept = keep_min;
  }

  std::vector<double> weights(kept);
  for (size_t i = 0; i < kept; ++i)
    weights[i] = std::exp((candidates_[i].logit - max_logit) / static_cast<double>(params_.temperature));
  std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
  return candidates_[pick(rng_)].id;
}

}  // namespace fi
