#pragma once
// The forward pass, written once for every architecture over the backend operations
// (host/model/backend.h): batched prefill and decode over a KV cache, for one sequence or several
// advancing in the same pass (each weight read once for all of them). It owns the order of work
// (embedding, layers, head) and hands each layer to the device a placement names; the residual
// stream crosses devices only where consecutive layers' devices differ.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "host/model/backend.h"
#include "host/model/model.h"

namespace fi {

// Which device computes what: per layer, the device for batches of one token per sequence (decode)
// and for longer ones (prefill); and the devices of the embedding and the head. Indices into the
// devices. A mixture-of-experts layer's expert half (in_expert_half) may compute elsewhere than the
// rest, for decode and prefill alike: where its experts live.
struct DevicePlacement {
  std::vector<size_t> decode, prefill;
  size_t embed = 0;
  size_t head = 0;
  std::vector<size_t> expert_half;  // per layer; empty: with the rest of the layer
  // Everything on device 0.
  static DevicePlacement single(int64_t layers) {
    return {std::vector<size_t>(static_cast<size_t>(layers), 0), std::vector<size_t>(static_cast<size_t>(layers), 0), 0, 0, {}};
  }
};

// Tokens appended to one sequence in a shared pass.
struct SequenceChunk {
  int64_t sequence = 0;
  std::span<const int32_t> tokens;
  bool logits = false;  // the logits of its last token are wanted
};

class Forward {
 public:
  // Every layer, the embedding and the head on `device`.
  Forward(const Model& model, std::unique_ptr<Backend> device);
  // Each layer where `placement` says (the devices are destroyed in reverse order).
  Forward(const Model& model, std::vector<std::unique_ptr<Backend>> devices, DevicePlacement placement);
  ~Forward();

  const Model& model() const { return model_; }
  int64_t context() const { return context_; }  // of each sequence
  int64_t sequences() const { return static_cast<int64_t>(positions_.size()); }
  int64_t max_batch() const { return max_batch_; }
  int64_t position(int64_t sequence = 0) const { return positions_.at(static_cast<size_t>(sequence)); }
  void reset() { std::fill(positions_.begin(), positions_.end(), 0); }
  // Forgets a sequence's tokens after `position` (their cache entries are overwritten by the next
  // ones): a conversation keeps the prefix it shares with what comes next.
  void rewind(int64_t position, int64_t sequence = 0) {
    int64_t& current = positions_.at(static_cast<size_t>(sequence));
    current = std::clamp<int64_t>(position, 0, current);
  }
  void set_trace(Trace* trace) {
    for (auto& device : devices_) device->set_trace(trace);
  }

  // Appends tokens at the current position; passes of up to max_batch tokens (longer inputs are
  // split). logits receives vocab floats for the last token, or for every token (tokens.size()
  // rows) when all_logits is set.
  // Sequence 0.
  void eval(std::span<const int32_t> tokens, float* logits, bool all_logits = false);
  // One pass over chunks of distinct sequences (at most max_batch tokens in all): logits receives
  // vocab floats for each chunk that wants them, in order.
  void eval_together(std::span<const SequenceChunk> chunks, float* logits);

 private:
  void check_tokens(std::span<const int32_t> tokens, int64_t sequence) const;
  // One pass; logits for the batch rows in `wanted` (ascending).
  void eval_batch(std::span<const int32_t> tokens, std::span<const BatchRun> runs, std::span<const int64_t> wanted,
                  float* logits);
  void run_batch(std::span<const int32_t> tokens, std::span<const BatchRun> runs, std::span<const int64_t> wanted,
                 float* logits);
  // The layer's attention on `device`, its feed-forward half on `ffn_device` (the residual stream
  // moves between them when they differ).
  void layer(Backend& device, Backend& ffn_device, int64_t index);
  void move_residual(Backend& from, Backend& to, int64_t tokens);
  void head(Backend& device, std::span<const int64_t> wanted, int64_t tokens, float* logits);

  const Model& model_;
  const ModelConfig& config_;
  int64_t context_;
  int64_t max_batch_;
  std::vector<int64_t> positions_;  // per sequence: tokens in its cache
  std::vector<std::unique_ptr<Backend>> devices_;
  std::vector<Backend*> decode_device_, prefill_device_;  // per layer
  std::vector<Backend*> expert_half_device_;               // per layer: null where it stays with the layer
  Backend* embed_device_ = nullptr;
  Backend* head_device_ = nullptr;
  std::vector<float> residual_hop_;  // the residual stream between devices
  int64_t pass_tokens_ = 0;          // of the pass under way
  std::vector<int32_t> batch_tokens_;
  std::vector<BatchRun> batch_runs_;
  std::vector<int64_t> wanted_rows_;
};

}  // namespace fi
