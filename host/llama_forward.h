#pragma once
// The llama forward pass on the CPU: batched prefill and single-token decode over a KV cache.
#include <cstdint>
#include <span>
#include <vector>

#include "host/buffer.h"
#include "host/llama_model.h"
#include "host/matmul.h"
#include "host/thread_pool.h"

namespace fi {

class LlamaForward {
 public:
  // context: KV cache length in tokens; max_batch: tokens evaluated per pass (longer inputs are
  // split).
  LlamaForward(const LlamaConfig& config, const LlamaWeights& weights, ThreadPool& pool, int64_t context,
               int64_t max_batch = 256);

  int64_t context() const { return context_; }
  int64_t position() const { return position_; }
  void reset() { position_ = 0; }

  // Appends tokens at the current position. logits receives vocab floats for the last token, or
  // for every token (tokens.size() rows) when all_logits is set.
  void eval(std::span<const int32_t> tokens, float* logits, bool all_logits = false);

 private:
  void eval_batch(std::span<const int32_t> tokens, float* logits, bool all_logits);
  void attention(int64_t layer, int64_t tokens);
  uint16_t* key_cache(int64_t layer, int64_t position) const;
  uint16_t* value_cache(int64_t layer, int64_t position) const;

  const LlamaConfig& config_;
  const LlamaWeights& weights_;
  ThreadPool& pool_;
  int64_t context_;
  int64_t max_batch_;
  int64_t position_ = 0;
  std::vector<double> inverse_frequencies_;  // per rotated pair

  PageBuffer kv_cache_;  // [layer][K|V][position][kv_dim] half precision
  // Run state for one batch, row-major [token][...].
  std::vector<float> x_, normed_, q_, k_, v_, attended_, projected_, gate_, up_;
  std::vector<float> rope_cos_, rope_sin_;  // [token][pair] for the current batch
  QuantizedBatch quantized_;
};

}  // namespace fi
