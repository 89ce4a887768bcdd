#pragma once
// The half-precision KV cache in host memory.
#include <cstdint>


namespace fi {

// The KV cache of layers [first_layer, n_layers): per layer, `context` keys then `context` values
// of kv_dim halves each.
struct HostKvCache {
  uint16_t* data = nullptr;
  int64_t first_layer = 0;
  int64_t context = 0;
  int64_t kv_dim = 0;

  uint16_t* keys(int64_t layer, int64_t position) const {
    return data + (((layer - first_layer) * 2) * context + position) * kv_dim;
  }
  uint16_t* values(int64_t layer, int64_t position) const {
    return data + (((layer - first_layer) * 2 + 1) * context + position) * kv_dim;
  }
};

}  // namespace fi
