#pragma once
// A llama-architecture model's configuration (from GGUF metadata) and its weights as typed views
// with their shapes, checked by name, type and exact shape.
#include <cstdint>
#include <vector>

#include "io/gguf.h"

namespace fi {

struct LlamaConfig {
  int64_t dim = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t ffn_dim = 0;
  int64_t vocab = 0;
  int64_t trained_context = 0;
  int64_t rope_dim = 0;
  double rope_base = 10000.0;
  double rms_eps = 1e-5;

  int64_t kv_dim() const { return n_kv_heads * head_dim; }
  // Reads llama.* metadata and checks it against the tensor table; throws Error on anything odd.
  static LlamaConfig from_gguf(const GgufFile& file);
};

// A weight matrix: `rows` rows of `cols` elements of `type`, row-major; or, when `interleaved`,
// groups of 8 rows interleaved block by block (host/repack.h), which only matmul reads. A matrix
// split between resident and streamed memory keeps rows [0, split_row) at `data` and the rest at
// `tail`.
struct WeightMatrix {
  TensorType type = TensorType::F32;
  int64_t cols = 0;
  int64_t rows = 0;
  uint64_t row_bytes = 0;
  const uint8_t* data = nullptr;
  bool interleaved = false;
  const uint8_t* tail = nullptr;
  int64_t split_row = 0;  // meaningful only with a tail

  const void* row(int64_t r) const {
    if (tail && r >= split_row) return tail + static_cast<uint64_t>(r - split_row) * row_bytes;
    return data + static_cast<uint64_t>(r) * row_bytes;
  }
};

struct LayerWeights {
  const float* attn_norm = nullptr;  // [dim]
  WeightMatrix wq, wk, wv, wo;       // [dim -> dim], [dim -> kv_dim] x2, [dim -> dim]
  const float* ffn_norm = nullptr;   // [dim]
  WeightMatrix w_gate, w_up, w_down; // [dim -> ffn] x2, [ffn -> dim]
};

// Calls visit("attn_q", layer.wq) and so on for a layer's seven matrices (GGUF name suffix, field),
// for any layer struct with these field names.
template <typename Layer, typename Visit>
void for_each_layer_matrix(Layer& layer, Visit&& visit) {
  visit("attn_q", layer.wq);
  visit("attn_k", layer.wk);
  visit("attn_v", layer.wv);
  visit("attn_output", layer.wo);
  visit("ffn_gate", layer.w_gate);
  visit("ffn_up", layer.w_up);
  visit("ffn_down", layer.w_down);
}

struct LlamaWeights {
  WeightMatrix token_embedding;          // vocab rows of dim
  const float* output_norm = nullptr;    // [dim]
  WeightMatrix output;                   // vocab rows of dim (the embedding when tied)
  const float* rope_freq_factors = nullptr;  // [rope_dim / 2] or null (Llama 3.1 style scaling)
  std::vector<LayerWeights> layers;
};

// The tensors a llama model must have, checked against the table (name, type, exact shape).
struct LlamaTensorSet {
  std::vector<const TensorInfo*> tensors;
  bool tied_output = false;
  static LlamaTensorSet require(const TensorTable& table, const LlamaConfig& config);
};

}  // namespace fi
