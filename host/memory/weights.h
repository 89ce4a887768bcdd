#pragma once
// A model's weights as views by role (io/architecture.h), wherever their bytes live. Vectors
// (norms, biases, RoPE factors) are one-row F32 matrices; an absent optional tensor has no data.
#include <array>
#include <vector>

#include "host/kernels/matrix.h"
#include "io/architecture.h"

namespace fi {

struct TensorViews {
  std::array<WeightMatrix, kRoleCount> by_role;

  WeightMatrix& operator[](Role role) { return by_role[index_of(role)]; }
  const WeightMatrix& operator[](Role role) const { return by_role[index_of(role)]; }
  const float* vector(Role role) const { return reinterpret_cast<const float*>(by_role[index_of(role)].data); }
};

struct ModelWeights {
  // The global roles; Output is the output head's matrix (the token embedding when tied).
  TensorViews globals;
  std::vector<TensorViews> layers;

  TensorViews& unit(Role role, int64_t layer) { return is_layer_role(role) ? layers.at(static_cast<size_t>(layer)) : globals; }
  const TensorViews& unit(Role role, int64_t layer) const {
    return is_layer_role(role) ? layers.at(static_cast<size_t>(layer)) : globals;
  }
  const WeightMatrix& at(Role role, int64_t layer) const { return unit(role, layer)[role]; }
  WeightMatrix& at(Role role, int64_t layer) { return unit(role, layer)[role]; }
};

// The shape of a tensor as a view, without data.
WeightMatrix matrix_shape(const TensorInfo& info);

}  // namespace fi
