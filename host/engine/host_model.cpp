#include "host/engine/host_model.h"

#include "host/cpu/cpu_backend.h"
#include "host/engine/placement.h"
#include "host/memory/kv_cache.h"
#include "io/log.h"

namespace fi {

std::unique_ptr<HostModel> HostModel::load(const std::string& path, ThreadPool& pool, const HostModelOptions& options) {
  return load(Model::open(path, options.model), pool, options.host_budget, options.io, options.experts);
}

std::unique_ptr<HostModel> HostModel::load(std::unique_ptr<Model> opened, ThreadPool& pool,
                                           std::optional<uint64_t> host_budget, const ReaderOptions& io,
                                           const ExpertCacheOptions& experts, HostPart part) {
  std::unique_ptr<HostModel> placed(new HostModel());
  placed->part_ = part;
  placed->model_ = std::move(opened);
  const Model& model = *placed->model_;
  placed->plan_ = make_plan(host_plan_input(model, host_budget, pool.size(), part));
  // The arena holds everything planned except the runtime's own memory.
  std::optional<uint64_t> capacity;
  if (host_budget)
    capacity = placed->plan_.host_bytes() - runtime_bytes(model.file(), model.config()) - placed->plan_.kernel_bytes;
  placed->arena_ = std::make_unique<HostArena>(capacity, host_budget.has_value());
  if (!placed->arena_->lock_refusal().empty())
    log_warning("%s", placed->arena_->lock_refusal().c_str());
  placed->store_ = std::make_unique<WeightStore>(model.file(), model.tensors(), placed->plan_, *placed->arena_, pool, io,
                                                 experts);
  return placed;
}

std::unique_ptr<CpuBackend> make_cpu_backend(HostModel& placed, ThreadPool& pool) {
  const Model& model = placed.model();
  const ModelConfig& config = model.config();
  HostKvCache kv{nullptr, 0, model.kv_rows(), config.kv_dim()};
  if (placed.part() == HostPart::Whole)
    kv.data = placed.arena().allocate_array<uint16_t>(kv_cache_bytes(config, model.kv_rows()) / sizeof(uint16_t), "KV cache");
  return std::make_unique<CpuBackend>(model, placed.store(), pool, kv, placed.arena());
}

}  // namespace fi
