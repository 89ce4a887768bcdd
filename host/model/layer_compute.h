#pragma once
// The narrow interface between the forward pass and a compute device. LlamaForward walks a batch
// through the layers and hands each layer to the device the placement names; the residual stream
// (tokens x dim floats) crosses between devices only where consecutive layers' devices differ.
// Each device keeps its own KV cache for the layers it computes.
#include <cstdint>
#include <span>

namespace fi {

class Trace;

class LayerCompute {
 public:
  virtual ~LayerCompute() = default;
  virtual const char* device_name() const = 0;  // "cpu" or "gpu"

  // Starts a batch of tokens at `position` (per-batch state such as RoPE angles).
  virtual void begin_batch(std::span<const int32_t> tokens, int64_t position) = 0;
  // The residual stream becomes the tokens' embedding rows.
  virtual void embed(std::span<const int32_t> tokens) = 0;
  virtual void load_residual(const float* host) = 0;  // tokens x dim floats from host memory
  virtual void store_residual(float* host) = 0;
  virtual void layer(int64_t index) = 0;
  // Final norm and output head for `rows` tokens from `first`; logits (host memory) gets rows x
  // vocab floats. rows may be 0: the device still passes the head (its prefetch schedule is fixed).
  virtual void head(int64_t first, int64_t rows, float* logits) = 0;

  // Spans of this device's reads, uploads and compute go to `trace` from now on (null: none).
  virtual void set_trace(Trace* trace) { trace_ = trace; }

 protected:
  Trace* trace_ = nullptr;
};

}  // namespace fi
