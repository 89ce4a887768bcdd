#pragma once
// Weights the CPU computes with, wherever they live: a unit's (a layer's, the output head's)
// views are complete and valid between acquire(unit) and release(unit). Units are acquired in
// compute order, every unit once per forward pass (streamed rows arrive on a fixed schedule).
#include <cstdint>

#include "host/memory/weights.h"

namespace fi {

class Trace;

class HostWeights {
 public:
  virtual ~HostWeights() = default;
  virtual const ModelWeights& weights() const = 0;
  // Unit index: 0 .. n_layers-1 for layers, n_layers for the output head.
  virtual void acquire(int64_t unit) = 0;
  virtual void release(int64_t unit) = 0;
  // The token's embedding row as floats.
  virtual void embed(int32_t token, float* out) = 0;
  // Reads of streamed rows become spans on the trace's disk track.
  virtual void set_trace(Trace* trace) = 0;
};

}  // namespace fi
