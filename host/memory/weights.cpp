#include "host/memory/weights.h"

#include <vector>

#include "host/kernels/matmul.h"
#include "host/memory/host_weights.h"

namespace fi {

WeightMatrix matrix_shape(const TensorInfo& info) {
  WeightMatrix m;
  m.type = info.type;
  m.cols = static_cast<int64_t>(info.shape[0]);
  m.rows = static_cast<int64_t>(info.rows());
  m.row_bytes = row_bytes(info.type, info.shape[0]);
  return m;
}

ExpertWeights expert_slices(const TensorViews& layer, int64_t n_experts, int32_t expert) {
  auto slice = [&](Role role) {
    const WeightMatrix& stacked = layer[role];
    const int64_t rows = stacked.rows / n_experts;
    return row_slice(stacked, expert * rows, rows);
  };
  return {slice(Role::FfnGateExps), slice(Role::FfnUpExps), slice(Role::FfnDownExps)};
}

void HostWeights::use_experts(int64_t layer, std::span<const int32_t> experts, bool /*predictable*/, const ExpertUse& use) {
  const TensorViews& views = weights().layers.at(static_cast<size_t>(layer));
  const int64_t n_experts = views[Role::FfnGateInp].rows;
  std::vector<ExpertWeights> weights;
  weights.reserve(experts.size());
  std::vector<ReadyExpert> ready;
  ready.reserve(experts.size());
  for (int32_t expert : experts) {
    weights.push_back(expert_slices(views, n_experts, expert));
    ready.push_back({expert, &weights.back()});
  }
  use(ready);
}

const WeightMatrix* HostWeights::lasting(int64_t layer, Role role) const {
  const WeightMatrix& w = weights().at(role, layer);
  return w.data ? &w : nullptr;
}

}  // namespace fi
