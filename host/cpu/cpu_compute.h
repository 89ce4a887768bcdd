#pragma once
// The llama layers on the CPU: weights from HostWeights (the model's WeightStore, or the host tier
// of a three-tier placement), a half-precision KV cache for the layers it computes, the batch's
// scratch in a host arena, kernels on the thread pool.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "host/memory/arena.h"
#include "host/memory/host_weights.h"
#include "host/model/layer_compute.h"
#include "host/model/llama_model.h"
#include "host/kernels/matmul.h"
#include "host/kernels/thread_pool.h"

namespace fi {

// The KV cache of layers [first_layer, n_layers): per layer, `context` keys then `context` values
// of kv_dim halves each.
struct HostKvCache {
  uint16_t* data = nullptr;
  int64_t first_layer = 0;
  int64_t context = 0;
};

class CpuCompute final : public LayerCompute {
 public:
  // Every layer, the embedding and the head: weights, KV cache and scratch from the model.
  CpuCompute(LlamaModel& model, ThreadPool& pool);
  // The layers from kv.first_layer on; scratch for batches of up to max_batch tokens from `scratch`.
  CpuCompute(const LlamaConfig& config, HostWeights& weights, ThreadPool& pool, HostKvCache kv, HostArena& scratch,
             int64_t max_batch);

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
  HostWeights& store_;
  const LlamaWeights& weights_;
  ThreadPool& pool_;
  HostKvCache kv_;
  std::vector<double> inverse_frequencies_;  // per rotated pair
  std::vector<std::string> layer_names_;     // "layer N", for NVTX and the trace
  int64_t tokens_ = 0;                       // in the current batch
  int64_t position_ = 0;                     // of its first token

  // Run state for one batch, row-major [token][...].
  float *x_, *normed_, *q_, *k_, *v_, *attended_, *projected_, *gate_, *up_;
  float *rope_cos_, *rope_sin_;  // [token][pair] for the current batch
  QuantizedBatch quantized_;
};

}  // namespace fi
