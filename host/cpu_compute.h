#pragma once
// The llama layers on the CPU: weights from the model's WeightStore (resident or streamed), a
// half-precision KV cache and the batch's scratch in the model's arena, kernels on the thread pool.
#include <cstdint>
#include <span>
#include <vector>

#include "host/layer_compute.h"
#include "host/llama_model.h"
#include "host/matmul.h"
#include "host/thread_pool.h"

namespace fi {

class CpuCompute final : public LayerCompute {
 public:
  CpuCompute(LlamaModel& model, ThreadPool& pool);

  const char* device_name() const override { return "cpu"; }
  void begin_batch(std::span<const int32_t> tokens, int64_t position) override;
  void embed(std::span<const int32_t> tokens) override;
  void load_residual(const float* host) override;
  void store_residual(float* host) override;
  void layer(int64_t index) override;
  void head(int64_t first, int64_t rows, float* logits) override;
  void set_trace(Trace* trace) override;

 private:
  void attention(int64_t layer, int64_t tokens);
  uint16_t* key_cache(int64_t layer, int64_t position) const;
  uint16_t* value_cache(int64_t layer, int64_t position) const;

  const LlamaConfig& config_;
  WeightStore& store_;
  const LlamaWeights& weights_;
  ThreadPool& pool_;
  int64_t context_;
  std::vector<double> inverse_frequencies_;  // per rotated pair
  int64_t tokens_ = 0;                       // in the current batch
  int64_t position_ = 0;                     // of its first token

  uint16_t* kv_cache_ = nullptr;  // [layer][K|V][position][kv_dim] half precision
  // Run state for one batch, row-major [token][...].
  float *x_, *normed_, *q_, *k_, *v_, *attended_, *projected_, *gate_, *up_;
  float *rope_cos_, *rope_sin_;  // [token][pair] for the current batch
  QuantizedBatch quantized_;
};

}  // namespace fi
