#pragma once
// The half-precision KV cache in host memory.
#include <cstdint>


namespace fi {

// The KV cache of layers [first_layer, n_layers): per layer, `rows` keys then `rows` values of
// kv_dim halves each. A row is one position of one sequence (Model::kv_rows).
struct HostKvCache {
  uint16_t* data = nullptr;
  int64_t first_layer = 0;
  int64_t rows = 0;
  int64_t kv_dim = 0;

  uint16_t* keys(int64_t layer, int64_t row) const { return data + (((layer - first_layer) * 2) * rows + row) * kv_dim; }
  uint16_t* values(int64_t layer, int64_t row) const {
    return data + (((layer - first_layer) * 2 + 1) * rows + row) * kv_dim;
  }
};

}  // namespace fi
