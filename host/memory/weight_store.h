#pragma once
// A model's weights placed as a Plan says: resident rows read once into the arena (direct I/O),
// streamed rows brought into staging slots by the Prefetcher for every use. The forward pass
// brackets each unit (a layer, then the output head) with acquire/release; in between, that unit's
// WeightMatrix views are complete and valid.
#include <cstdint>
#include <memory>
#include <vector>

#include "host/memory/arena.h"
#include "host/memory/expert_cache.h"
#include "host/memory/host_weights.h"
#include "host/memory/prefetcher.h"
#include "host/kernels/thread_pool.h"
#include "host/trace/trace.h"
#include "io/async_reader.h"
#include "io/architecture.h"
#include "io/gguf.h"
#include "planner/plan.h"

namespace fi {

class WeightStore final : public HostWeights {
 public:
  // plan.units: the layers in order, then the output head. The plan must outlive the store.
  WeightStore(const GgufFile& file, const ModelTensors& tensors, const Plan& plan, HostArena& arena, ThreadPool& pool,
              const ReaderOptions& io, const ExpertCacheOptions& experts = {});
  ~WeightStore();
  WeightStore(const WeightStore&) = delete;
  WeightStore& operator=(const WeightStore&) = delete;

  const ModelWeights& weights() const override { return weights_; }
  void acquire(int64_t unit) override;
  void release(int64_t unit) override;
  void abandon_pass() override;
  // Read from the file when the embedding is not resident.
  void embed(int32_t token, float* out) override;

  // Streams whole tokens' worth of weights (at least `bytes`) through the staging ring without
  // computing, after one unmeasured token to reach the steady state: the bandwidth the pipeline
  // gets from the disk when nothing else runs, in GB/s. Only between forward passes; 0 when
  // nothing streams.
  double stream_only_GBps(uint64_t bytes);
  // The expert cache's rate for on-demand expert reads (ExpertCache::read_only_GBps); 0 without one.
  double expert_reads_GBps(uint64_t bytes, int in_flight, uint64_t seed = 0) {
    return expert_cache_ ? expert_cache_->read_only_GBps(bytes, in_flight, seed) : 0.0;
  }

  const AsyncReader& reader() const { return *reader_; }
  void set_trace(Trace* trace) override;
  void use_experts(int64_t layer, std::span<const int32_t> experts, bool predictable, const ExpertUse& use) override;
  bool wants_expert_predictions() const override { return expert_cache_ && expert_cache_->wants_predictions(); }
  void expect_experts(int64_t layer, std::span<const int32_t> experts) override;
  const WeightMatrix* lasting(int64_t layer, Role role) const override;
  // The cache experts are read into on demand, when the plan has one.
  const ExpertCache* expert_cache() const { return expert_cache_.get(); }
  double stall_seconds() const { return prefetcher_ ? prefetcher_->stall_seconds() : 0.0; }
  uint64_t streamed_bytes_read() const;  // by the prefetcher, since load
  double load_read_seconds() const { return load_read_seconds_; }

 private:
  struct Target {
    WeightMatrix* matrix;
    const PlanMatrix* plan;
    bool interleave;
  };
  void load_resident(const Plan& plan, const ModelTensors& tensors, HostArena& arena);

  ThreadPool& pool_;
  ModelWeights weights_;
  std::vector<std::vector<Target>> targets_;  // per plan unit
  std::vector<int64_t> schedule_index_;       // per plan unit: its place in the prefetch schedule, or -1
  uint64_t token_read_bytes_ = 0;  // what the schedule reads per token
  std::unique_ptr<AsyncReader> reader_;
  std::unique_ptr<Prefetcher> prefetcher_;
  std::unique_ptr<ExpertCache> expert_cache_;
  uint64_t bytes_after_load_ = 0;
  double load_read_seconds_ = 0.0;
  // Embedding rows not in memory are read on demand through their own file handle.
  std::unique_ptr<DirectFile> embedding_file_;
  uint8_t* embedding_buffer_ = nullptr;
  uint64_t embedding_buffer_bytes_ = 0;
  const TensorInfo* embedding_info_ = nullptr;
  int64_t embedding_resident_rows_ = 0;  // rows [0, this) of the embedding are in memory
};

}  // namespace fi
