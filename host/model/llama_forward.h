#pragma once
// The llama forward pass: batched prefill and single-token decode over a KV cache. It owns the
// order of work (embedding, layers, head) and hands each layer to a compute device through
// LayerCompute; the devices own weights, caches and kernels.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "host/model/layer_compute.h"
#include "host/model/llama_model.h"
#include "host/kernels/thread_pool.h"

namespace fi {

// Which device computes what: per layer, the device for batches of one token (decode) and for
// longer ones (prefill); and the devices of the embedding and the head. Indices into the devices.
struct DevicePlacement {
  std::vector<size_t> decode, prefill;
  size_t embed = 0;
  size_t head = 0;
  // Everything on device 0.
  static DevicePlacement single(int64_t layers) {
    return {std::vector<size_t>(static_cast<size_t>(layers), 0), std::vector<size_t>(static_cast<size_t>(layers), 0), 0, 0};
  }
};

class LlamaForward {
 public:
  // Every layer on the CPU: KV cache and scratch come from the model's arena.
  LlamaForward(LlamaModel& model, ThreadPool& pool);
  // Every layer, the embedding and the head on `device`.
  LlamaForward(const LlamaModel& model, std::unique_ptr<LayerCompute> device);
  // Each layer where `placement` says (the devices are destroyed in reverse order).
  LlamaForward(const LlamaModel& model, std::vector<std::unique_ptr<LayerCompute>> devices, DevicePlacement placement);
  ~LlamaForward();

  int64_t context() const { return context_; }
  int64_t position() const { return position_; }
  void reset() { position_ = 0; }
  void set_trace(Trace* trace) {
    for (auto& device : devices_) device->set_trace(trace);
  }

  // Appends tokens at the current position; passes of up to max_batch tokens (longer inputs are
  // split). logits receives vocab floats for the last token, or for every token (tokens.size()
  // rows) when all_logits is set.
  void eval(std::span<const int32_t> tokens, float* logits, bool all_logits = false);

 private:
  void eval_batch(std::span<const int32_t> tokens, float* logits, bool all_logits);

  const LlamaConfig& config_;
  int64_t context_;
  int64_t max_batch_;
  int64_t position_ = 0;
  std::vector<std::unique_ptr<LayerCompute>> devices_;
  std::vector<LayerCompute*> decode_device_, prefill_device_;  // per layer
  LayerCompute* embed_device_ = nullptr;
  LayerCompute* head_device_ = nullptr;
  std::vector<float> residual_hop_;  // the residual stream between devices
};

}  // namespace fi
