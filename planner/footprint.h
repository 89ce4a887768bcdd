#pragma once
// Where a model's weight bytes are: per layer and per tensor group, by the roles of the model
// description (io/architecture.h). The planner's raw material, and what `flexinfer inspect` prints.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/tensor_table.h"

namespace fi {

struct ModelFootprint {
  struct Layer {
    uint64_t attention_bytes = 0;  // attn_q/k/v/output and their biases
    uint64_t ffn_bytes = 0;        // ffn_gate/up/down and their biases
    uint64_t norm_bytes = 0;       // attn_norm, ffn_norm, attn_q_norm, attn_k_norm
    uint64_t total() const { return attention_bytes + ffn_bytes + norm_bytes; }
  };
  std::vector<Layer> layers;                // indexed by block number
  uint64_t embedding_bytes = 0;             // token_embd
  uint64_t output_bytes = 0;                // output + output_norm
  uint64_t other_bytes = 0;                 // anything without a role in io/architecture.h
  std::map<std::string, uint64_t> by_group; // "attn_q", "attn_q.bias", "ffn_down", ... summed over layers

  uint64_t total() const;
  static ModelFootprint of(const TensorTable& table);
};

}  // namespace fi
