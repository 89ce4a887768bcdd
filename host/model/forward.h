#pragma once
// The forward pass, written once for every architecture over the backend operations
// (host/model/backend.h): batched prefill and single-token decode over a KV cache. It owns the
// order of work (embedding, layers, head) and hands each layer to the device a placement names;
// the residual stream crosses devices only where consecutive layers' devices differ.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "host/model/backend.h"
#include "host/model/model.h"

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

class Forward {
 public:
  // Every layer, the embedding and the head on `device`.
  Forward(const Model& model, std::unique_ptr<Backend> device);
  // Each layer where `placement` says (the devices are destroyed in reverse order).
  Forward(const Model& model, std::vector<std::unique_ptr<Backend>> devices, DevicePlacement placement);
  ~Forward();

  const Model& model() const { return model_; }
  int64_t context() const { return context_; }
  int64_t position() const { return position_; }
  void reset() { position_ = 0; }
  // Forgets the tokens after `position` (their cache entries are overwritten by the next ones):
  // a conversation keeps the prefix it shares with what comes next.
  void rewind(int64_t position) { position_ = std::clamp<int64_t>(position, 0, position_); }
  void set_trace(Trace* trace) {
    for (auto& device : devices_) device->set_trace(trace);
  }

  // Appends tokens at the current position; passes of up to max_batch tokens (longer inputs are
  // split). logits receives vocab floats for the last token, or for every token (tokens.size()
  // rows) when all_logits is set.
  void eval(std::span<const int32_t> tokens, float* logits, bool all_logits = false);

 private:
  void eval_batch(std::span<const int32_t> tokens, float* logits, bool all_logits);
  void layer(Backend& device, int64_t index);
  void head(Backend& device, int64_t first, int64_t rows, float* logits);

  const Model& model_;
  const ModelConfig& config_;
  int64_t context_;
  int64_t max_batch_;
  int64_t position_ = 0;
  std::vector<std::unique_ptr<Backend>> devices_;
  std::vector<Backend*> decode_device_, prefill_device_;  // per layer
  Backend* embed_device_ = nullptr;
  Backend* head_device_ = nullptr;
  std::vector<float> residual_hop_;  // the residual stream between devices
};

}  // namespace fi
