#pragma once
// The operations a compute device offers the forward pass (host/model/forward.h), which is
// written once over them. A device owns its weights' views, its KV cache for the layers it
// computes, its kernels and its run state: one buffer per Activation, of activation_width floats
// per token of a batch.
#include <cstdint>
#include <initializer_list>
#include <span>

#include "io/architecture.h"

namespace fi {

class Trace;
class ExpertAssist;

// The run state of a batch: row-major [token][width] floats. In a mixture-of-experts layer Gate
// and Up have room for one row of expert_ffn_dim per choice: [token][choice][expert_ffn_dim].
enum class Activation : uint8_t { Residual, Normed, Query, Key, Value, Attended, Gate, Up, RouterLogits };
constexpr size_t kActivationCount = static_cast<size_t>(Activation::RouterLogits) + 1;
// Floats per token of each buffer: the one definition every device allocates by.
int64_t activation_width(Activation activation, const ModelConfig& config);

// Where a batch's tokens go: `count` consecutive tokens of one sequence at positions `position`
// on. A sequence's keys and values occupy the cache rows from `cache_begin` (its slot) on, one row
// per position; a token attends to its own sequence's rows only.
struct BatchRun {
  int64_t cache_begin = 0;
  int64_t position = 0;
  int64_t count = 0;
};

// out = weight · in (out += with accumulate: the residual add without a pass of its own).
struct Product {
  Role weight;
  Activation out;
  bool accumulate = false;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* device_name() const = 0;  // "cpu" or "gpu"

  // Starts a batch: the tokens of `runs`, in order (per-batch state such as RoPE angles).
  virtual void begin_batch(std::span<const int32_t> tokens, std::span<const BatchRun> runs) = 0;
  // The residual stream becomes the tokens' embedding rows.
  virtual void embed(std::span<const int32_t> tokens) = 0;
  virtual void load_residual(const float* host) = 0;  // tokens x dim floats from host memory
  virtual void store_residual(float* host) = 0;

  // A unit is a layer (0 .. n_layers-1) or the output head (n_layers); its weights are valid from
  // begin_unit to end_unit. Every unit passes through in order once per batch.
  virtual void begin_unit(int64_t unit) = 0;
  virtual void end_unit(int64_t unit) = 0;
  // The batch ended in an error, perhaps inside a unit: what the device holds for the pass goes,
  // and the next batch starts as the first one did.
  virtual void abandon_batch() {}

  // out = RMSNorm(in) * weight, per token.
  virtual void rms_norm(Activation in, Role weight, Activation out) = 0;
  // x = RMSNorm(x) * weight per head of head_dim elements (Q/K norm).
  virtual void rms_norm_heads(Activation x, Role weight) = 0;
  // The products of one input, in order.
  virtual void multiply(Activation in, std::initializer_list<Product> products) = 0;
  virtual void add_bias(Activation x, Role bias) = 0;
  // RoPE (the architecture's pairing) on Query and Key at the batch's positions, then Key and
  // Value into the layer's cache.
  virtual void rope_and_store_kv(int64_t layer) = 0;
  // Attended = causal attention of Query over the layer's cache (grouped-query heads).
  virtual void attention(int64_t layer) = 0;
  // gate = silu(gate) * up
  virtual void swiglu(Activation gate, Activation up) = 0;
  // Mixture of experts, as llama.cpp routes: softmax over each token's router logits, its
  // n_experts_used most probable experts (ties: the lower index), their probabilities renormalised
  // to sum to one. The batch's routing until the next call.
  virtual void route(Activation logits) = 0;
  // The experts' feed-forward network for the routing's choices, onto the residual stream: for
  // each token, the sum over its choices of routing weight · down(silu(gate · in) * up · in) with
  // the chosen expert's slices. Each chosen expert's weights are used once for all the batch's
  // tokens that chose it; Gate and Up hold the choices' rows meanwhile, in an order of the backend's.
  virtual void experts_ffn(Activation in) = 0;
  // Speculation, where experts are read on demand: the router of `layer` (one still to come)
  // applied to the residual stream as it is now predicts that layer's choice, so the reads of
  // those experts can start while this layer computes. Changes no result.
  virtual void foresee_experts(int64_t /*layer*/) {}
  // From here on the batch is these tokens (ascending batch rows: the ones whose logits are wanted).
  virtual void keep_rows(std::span<const int64_t> rows) = 0;
  // logits (host memory, rows x vocab floats) = Output · in.
  virtual void output_logits(Activation in, float* logits) = 0;

  // A device that can compute some of another device's experts (host/memory/expert_assist.h), or null.
  virtual ExpertAssist* expert_assist() { return nullptr; }

  // Spans of this device's reads, uploads and compute go to `trace` from now on (null: none).
  virtual void set_trace(Trace* trace) { trace_ = trace; }

 protected:
  Trace* trace_ = nullptr;
};

}  // namespace fi
