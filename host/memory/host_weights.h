#pragma once
// Weights the CPU computes with, wherever they live: a unit's (a layer's, the output head's)
// views are complete and valid between acquire(unit) and release(unit). Units are acquired in
// compute order, every unit once per forward pass (streamed rows arrive on a fixed schedule).
#include <cstdint>
#include <functional>
#include <span>

#include "host/memory/weights.h"

namespace fi {

class Trace;

// One expert's slices of a layer's stacked expert tensors.
struct ExpertWeights {
  WeightMatrix gate, up, down;
};
struct ReadyExpert {
  int32_t expert;
  const ExpertWeights* weights;
};
// Experts whose weights are available together (computing them in one go saves hand-offs).
using ExpertUse = std::function<void(std::span<const ReadyExpert> ready)>;

class HostWeights {
 public:
  virtual ~HostWeights() = default;
  virtual const ModelWeights& weights() const = 0;
  // Unit index: 0 .. n_layers-1 for layers, n_layers for the output head.
  virtual void acquire(int64_t unit) = 0;
  virtual void release(int64_t unit) = 0;
  // A pass ended in an error, perhaps between an acquire and its release: the next pass starts
  // over from unit 0.
  virtual void abandon_pass() {}
  // The token's embedding row as floats.
  virtual void embed(int32_t token, float* out) = 0;
  // Reads of streamed rows become spans on the trace's disk track.
  virtual void set_trace(Trace* trace) = 0;
  // Mixture of experts, within the acquired unit of `layer`: calls `use` with each of `experts`
  // (distinct) once, with its weights, valid during the call: in groups of those available at once,
  // in the order they become available. By default every expert is resident in the stacked views,
  // one group. `predictable`: a batch
  // small enough for the forward pass to predict the next layer's experts (decode).
  virtual void use_experts(int64_t layer, std::span<const int32_t> experts, bool predictable, const ExpertUse& use);
  // Whether a prediction of the coming layers' experts is wanted now (experts are read on demand
  // and reading ahead is on), so that computing one pays.
  virtual bool wants_expert_predictions() const { return false; }
  // A prediction: `experts` (distinct) of `layer`, a layer still to come, will likely be chosen.
  virtual void expect_experts(int64_t /*layer*/, std::span<const int32_t> /*experts*/) {}
  // `role`'s view in `layer` when it stays valid outside the layer's unit (it does not stream),
  // else null: for looking ahead at a later layer's small tensors.
  virtual const WeightMatrix* lasting(int64_t layer, Role role) const;
};

// Expert `expert`'s rows of a stacked view.
ExpertWeights expert_slices(const TensorViews& layer, int64_t n_experts, int32_t expert);

}  // namespace fi
