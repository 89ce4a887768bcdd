#pragma once
// The llama forward pass on the CPU: batched prefill and single-token decode over a KV cache.
#include <cstdint>
#include <span>
#include <vector>

#include "host/llama_model.h"
#include "host/matmul.h"
#include "host/thread_pool.h"

namespace fi {

class LlamaForward {
 public:
  // KV cache and scratch come from the model's arena: model.context() tokens of cache, passes of
  // up to model.max_batch() tokens (longer inputs are split).
  LlamaForward(LlamaModel& model, ThreadPool& pool);

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
  WeightStore& store_;
  const LlamaWeights& weights_;
  ThreadPool& pool_;
  int64_t context_;
  int64_t max_batch_;
  int64_t position_ = 0;
  std::vector<double> inverse_frequencies_;  // per rotated pair

  uint16_t* kv_cache_ = nullptr;  // [layer][K|V][position][kv_dim] half precision
  // Run state for one batch, row-major [token][...].
  float *x_, *normed_, *q_, *k_, *v_, *attended_, *projected_, *gate_, *up_;
  float *rope_cos_, *rope_sin_;  // [token][pair] for the current batch
  QuantizedBatch quantized_;
};

}  // namespace fi
