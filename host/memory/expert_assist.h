#pragma once
// A second device beside the one that computes a mixture-of-experts layer's expert half: the GPU
// beside experts that live on the CPU. It keeps a cache of experts of its own (VRAM), fed by what
// the router chooses, and computes the chosen experts it holds; of the others, it takes over those
// that are faster to upload than to compute in place. Its decisions depend on the routing alone
// (the order in which the host's experts become available does not matter), so that a host budget
// changes no result.
#include <cstdint>
#include <functional>
#include <span>

#include "host/kernels/routing.h"
#include "host/memory/host_weights.h"

namespace fi {

struct ExpertAssistStats {
  uint64_t uses = 0;          // (layer, expert) uses computed by the assist, one per batch
  uint64_t hits = 0;          // of them, held already
  uint64_t uploads = 0;       // experts uploaded: to compute them now, or to keep
  uint64_t upload_bytes = 0;  // by them
  uint64_t kept = 0;          // of the uploads, copies of experts the host computed
};

class ExpertAssist {
 public:
  virtual ~ExpertAssist() = default;
  // A layer's experts are about to compute: `x` (host memory, tokens x dim floats) is their input,
  // `chosen` the distinct experts the routing chose (ascending). Experts the assist holds start
  // computing at once.
  virtual void begin_layer(int64_t layer, const float* x, int64_t tokens, std::span<const int32_t> chosen,
                           const BatchRouting& routing) = 0;
  // Whether `expert` (chosen) computes on the assist from a copy it holds: the host need not have it.
  virtual bool holds(int32_t expert) const = 0;
  // Whether the assist holds a copy of `expert` of `layer` now (one the host need not read ahead).
  virtual bool caches(int64_t layer, int32_t expert) const = 0;
  // The host has `expert`'s weights (host memory, valid during the call): true when the assist
  // computes it (it uploads them); false when the host computes it (the assist may keep a copy).
  virtual bool receive(int32_t expert, const ExpertWeights& weights) = 0;
  // Waits for the layer's experts computed by the assist: each of their choices' result (dim
  // floats, unweighted), in no particular order.
  virtual void finish_layer(const std::function<void(int32_t choice, const float* result)>& each) = 0;
  virtual ExpertAssistStats stats() const = 0;
  virtual int64_t slots() const = 0;
};

}  // namespace fi
