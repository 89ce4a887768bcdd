#pragma once
// The host side of a three-tier placement (planner/tier_plan.h), shared by the GPU and the CPU:
//   - the host-homed weight rows, pinned so that they upload at full PCIe speed;
//   - the KV cache of the layers the CPU decodes, pinned too: the GPU prefills those layers and
//     moves their new keys and values here;
//   - the disk-homed rows, read into pinned staging slots by the prefetcher, unit after unit in
//     compute order, every unit once per forward pass whichever device computes it.
// The GPU side fills the host rows in its single pass over the file, and uploads a unit's host and
// staged rows before computing it. As HostWeights, the store gives the CPU views of the layers it
// decodes, which it computes on in place.
#include <cstdint>
#include <memory>
#include <vector>

#include "host/memory/host_weights.h"
#include "host/memory/kv_cache.h"
#include "host/memory/prefetcher.h"
#include "host/model/model.h"
#include "io/async_reader.h"
#include "planner/tier_plan.h"

namespace fi {

namespace cuda {
class PinnedBuffer;
}

class TierStore final : public HostWeights {
 public:
  // Pinned memory is allocated for CUDA device `device`.
  TierStore(const Model& model, TierPlan plan, int device, const ReaderOptions& io);
  ~TierStore() override;
  TierStore(const TierStore&) = delete;
  TierStore& operator=(const TierStore&) = delete;

  const TierPlan& plan() const { return plan_; }
  // Where matrix m's host rows live (filled by the GPU side's load).
  uint8_t* host_rows(const TierMatrix& m) const;
  // Layers from this one on decode on the CPU (n_layers when none does).
  int64_t first_cpu_layer() const { return first_cpu_layer_; }
  HostKvCache kv_cache() const;
  // The acquired unit's staging slot, or null when the unit reads nothing from disk.
  const uint8_t* staged() const { return staged_; }

  // The CPU-decoded layers' views; every unit is acquired in turn, whichever device computes it.
  const ModelWeights& weights() const override { return weights_; }
  void acquire(int64_t unit) override;
  void release(int64_t unit) override;
  void abandon_pass() override;
  // The embedding lives on the GPU: calling this is an internal error.
  void embed(int32_t token, float* out) override;
  void set_trace(Trace* trace) override;

 private:
  struct CpuView {
    WeightMatrix* matrix;
    const TierMatrix* planned;
  };

  TierPlan plan_;
  int64_t first_cpu_layer_ = 0;
  int64_t kv_rows_ = 0;
  int64_t kv_dim_ = 0;
  std::unique_ptr<cuda::PinnedBuffer> host_weights_, kv_cache_, staging_;
  std::unique_ptr<AsyncReader> reader_;
  std::unique_ptr<Prefetcher> prefetcher_;
  std::vector<int64_t> schedule_index_;  // per unit: its place in the prefetch schedule, or -1
  ModelWeights weights_;
  std::vector<std::vector<float>> small_tensors_;  // the CPU layers' norms and biases
  std::vector<std::vector<CpuView>> cpu_views_;   // per unit (empty for GPU-decoded units)
  const uint8_t* staged_ = nullptr;
};

}  // namespace fi
