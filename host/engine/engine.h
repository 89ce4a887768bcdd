#pragma once
// The engine: a loaded model, its tokenizer, a thread pool and the forward state, plus the
// generation loop the CLI and the tests share.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/engine/host_model.h"
#include "host/memory/expert_assist.h"
#include "host/gpu/gpu_backend.h"
#include "host/model/forward.h"
#include "host/model/model.h"
#include "host/memory/tier_store.h"
#include "host/text/sampler.h"
#include "host/kernels/thread_pool.h"
#include "host/trace/trace.h"
#include "host/text/tokenizer.h"
#include "planner/profile.h"

namespace fi {

struct EngineOptions {
  std::string model_path;
  int threads = 0;       // 0: one per available core
  // 0: min(4096, trained context), shortened (with a notice) until the KV cache fits the host
  // budget; a context given is never changed.
  int64_t context = 0;
  // Sequences decoded together, each with its own KV cache of `context` tokens (a server's slots).
  int64_t sequences = 1;
  std::optional<uint64_t> host_budget;  // --host-mem; none: load every weight (or auto_host_budget)
  std::optional<uint64_t> gpu_budget;   // --gpu-mem; none: the CPU (or auto_gpu_budget)
  // Budgets the user did not give, chosen from the machine: on the CPU, every weight in RAM when the
  // model fits the memory available (80% of MemAvailable, or the memory cgroup's room when less),
  // else streaming within that; on the GPU, its free memory when a device is usable.
  bool auto_host_budget = false;
  bool auto_gpu_budget = false;
  int gpu_device = 0;
  // The machine a three-tier placement is planned for (--profile); none: probe's cached profile,
  // else nominal figures.
  std::optional<Profile> profile;
  std::string trace;  // write spans of reads, uploads and compute to this file as they happen (--trace)
  ReaderOptions io;
  // Experts read on demand: which cached one makes room (--expert-policy), whether the next
  // layer's are read ahead (--expert-speculation).
  ExpertCacheOptions experts;
};

struct GenerationStats {
  int64_t prompt_tokens = 0;
  double prompt_seconds = 0.0;
  int64_t generated_tokens = 0;
  double generation_seconds = 0.0;  // from the first sampled token to the last
  bool stopped_at_end_of_generation = false;
  bool interrupted = false;  // `stop` was raised
};

class Engine {
 public:
  explicit Engine(const EngineOptions& options);

  const Model& model() const { return host_model_ ? host_model_->model() : *model_; }
  const ModelConfig& config() const { return model().config(); }
  // The host-memory placement of a CPU run (null on the GPU path).
  HostModel* host_model() { return host_model_.get(); }
  const HostModel* host_model() const { return host_model_.get(); }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  Forward& forward() { return *forward_; }
  ThreadPool& pool() { return *pool_; }
  double load_seconds() const { return load_seconds_; }
  const EngineOptions& options() const { return options_; }
  bool on_gpu() const { return options_.gpu_budget.has_value(); }
  // The GPU budget placement used: --gpu-mem (or the automatic one), or the device's room where
  // that was less. 0 on the CPU.
  uint64_t gpu_budget() const { return gpu_budget_; }
  const GpuMemoryPlan& gpu_memory() const { return gpu_memory_; }
  // Experts on the CPU beside the GPU: the cache of experts in VRAM, when the budget leaves room
  // for one (else null, and a plan of no slots).
  const ExpertAssist* gpu_expert_cache() const { return gpu_expert_cache_; }
  const GpuExpertCachePlan& gpu_expert_cache_plan() const { return gpu_expert_cache_plan_; }
  // The placement over GPU, host memory and disk (and the layers decoded on the CPU), when the
  // model does not fit the GPU budget or a host budget is given too.
  const std::optional<TierPlan>& tiers() const { return tiers_; }
  // The machine profile the tiers were planned with (its `machine` is kNominalProfile when there
  // was neither --profile nor a cached probe).
  const std::optional<Profile>& tier_profile() const { return tier_profile_; }
  // The trace being written (with EngineOptions::trace), else null.
  Trace* trace() { return trace_.get(); }
  // Where the weights live and why, one line each (the first says what was chosen and why when a
  // budget was chosen automatically or the context shortened).
  const std::vector<std::string>& placement() const { return placement_; }

  // Evaluates the prompt, then samples up to max_tokens tokens, calling on_token for each; stops
  // early at an end-of-generation token (not passed to on_token) or, checked after every token,
  // when `stop` is raised (by a signal handler, say).
  // With ignore_end_of_generation, end-of-generation tokens are passed on like any other (for
  // benchmarks and soak runs of a fixed length).
  GenerationStats generate(const std::vector<int32_t>& prompt, int64_t max_tokens, Sampler& sampler,
                           const std::function<void(int32_t)>& on_token, const std::atomic<bool>* stop = nullptr,
                           bool ignore_end_of_generation = false);

 private:
  void open_on_cpu(std::unique_ptr<Model> model);
  void open_on_gpu(std::unique_ptr<Model> model);
  // gpu_budget: --gpu-mem, or the device's room where that is less.
  void open_on_gpu_within(std::unique_ptr<Model> model, uint64_t gpu_budget);
  void open_experts_beside_gpu(std::unique_ptr<Model> model, uint64_t gpu_budget);
  void describe_gpu_placement(uint64_t gpu_budget);
  void describe_expert_cache();

  std::unique_ptr<Trace> trace_;  // first: destroyed last, after the threads that add to it
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Model> model_;            // the GPU path's model (dense models)
  // The CPU path's: the model placed in host memory (with a GPU: the expert halves of its layers).
  std::unique_ptr<HostModel> host_model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  // The host side of a three-tier placement and the scratch of its CPU-decoded layers: before
  // the forward pass, whose devices use them.
  std::unique_ptr<TierStore> tier_store_;
  std::unique_ptr<HostArena> cpu_scratch_;
  std::unique_ptr<Forward> forward_;
  double load_seconds_ = 0.0;
  EngineOptions options_;
  GpuMemoryPlan gpu_memory_;
  GpuExpertCachePlan gpu_expert_cache_plan_;
  uint64_t gpu_budget_ = 0;
  ExpertAssist* gpu_expert_cache_ = nullptr;  // the GPU backend's, in forward_
  std::optional<Profile> tier_profile_;
  std::optional<TierPlan> tiers_;
  std::vector<std::string> placement_;
};

}  // namespace fi
