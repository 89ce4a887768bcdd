#pragma once
// A model placed in host memory for the CPU: the Plan (what stays resident, what streams), the
// arena of exactly the budget, and the WeightStore that fills the plan's views.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "host/cpu/cpu_backend.h"
#include "host/kernels/thread_pool.h"
#include "host/memory/arena.h"
#include "host/engine/placement.h"
#include "host/memory/weight_store.h"
#include "host/model/forward.h"
#include "host/model/model.h"
#include "io/async_reader.h"
#include "planner/plan.h"

namespace fi {

struct HostModelOptions {
  ModelOptions model;
  std::optional<uint64_t> host_budget;  // none: load every weight, no limit
  ReaderOptions io;
  ExpertCacheOptions experts;  // experts read on demand: which cached one makes room, speculation
};

class HostModel {
 public:
  static std::unique_ptr<HostModel> load(const std::string& path, ThreadPool& pool, const HostModelOptions& options = {});
  // An opened model placed within `host_budget` (none: every weight loaded, no limit); `part`
  // says whether the CPU computes all of it or the expert halves of its layers.
  static std::unique_ptr<HostModel> load(std::unique_ptr<Model> model, ThreadPool& pool,
                                         std::optional<uint64_t> host_budget, const ReaderOptions& io,
                                         const ExpertCacheOptions& experts = {}, HostPart part = HostPart::Whole);

  const Model& model() const { return *model_; }
  const ModelConfig& config() const { return model_->config(); }
  const Plan& plan() const { return plan_; }
  const ModelWeights& weights() const { return store_->weights(); }
  WeightStore& store() { return *store_; }
  HostArena& arena() { return *arena_; }
  uint64_t weight_bytes() const { return plan_.weight_bytes(); }
  HostPart part() const { return part_; }

 private:
  HostModel() = default;
  HostPart part_ = HostPart::Whole;
  std::unique_ptr<Model> model_;
  Plan plan_;
  std::unique_ptr<HostArena> arena_;
  std::unique_ptr<WeightStore> store_;  // after the arena: destroyed first
};

// The CPU backend for what the placed model covers, its KV cache (for the whole model) and
// scratch from the model's arena: Forward forward(placed.model(), make_cpu_backend(placed, pool)).
std::unique_ptr<CpuBackend> make_cpu_backend(HostModel& model, ThreadPool& pool);

}  // namespace fi
