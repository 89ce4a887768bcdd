#pragma once
// A llama model ready to run: its file, configuration, placement plan, host arena and weights.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/memory/arena.h"
#include "host/model/llama_model_types.h"
#include "host/kernels/thread_pool.h"
#include "host/memory/weight_store.h"
#include "io/async_reader.h"
#include "io/gguf.h"
#include "planner/plan.h"
#include "planner/tier_plan.h"

namespace fi {

struct ModelOptions {
  std::optional<uint64_t> host_budget;  // none: load every weight, no limit
  int64_t context = 0;                  // KV cache length; 0: min(4096, trained context)
  int64_t max_batch = 256;              // tokens per forward pass
  ReaderOptions io;
  bool load_weights = true;             // false: only the file, configuration and shapes (the GPU loads its own)
};

// Bytes of the fp16 KV cache and of one forward pass's scratch (defined with the forward pass).
uint64_t kv_cache_bytes(const LlamaConfig& config, int64_t context);
uint64_t forward_scratch_bytes(const LlamaConfig& config, int64_t context, int64_t max_batch, int threads);
// RoPE inverse frequency of each rotated pair, in double, divided by the file's frequency factors
// when it has them (Llama 3.1 style scaling).
std::vector<double> rope_inverse_frequencies(const LlamaConfig& config, const float* frequency_factors);
// A small F32 tensor (a norm, the RoPE frequency factors) read from the file once.
std::vector<float> read_f32_tensor(const GgufFile& file, const TensorInfo& info);
// Memory the process needs outside the arena (code, metadata, tokenizer, thread stacks, logits).
uint64_t runtime_bytes(const GgufFile& file, const LlamaConfig& config);

// The planner's view of a llama model: its units, small tensors and fixed costs.
PlanInput llama_plan_input(const GgufFile& file, const LlamaConfig& config, const LlamaTensorSet& tensors,
                           const ModelOptions& options, int threads);

// The three-tier planner's view: the same units, the GPU engine's fixed device costs (gpu_memory
// in host/gpu_compute.h, without weights and KV cache), host fixed costs without the KV cache (a
// layer's cache lives where it decodes).
TierInput llama_tier_input(const GgufFile& file, const LlamaConfig& config, const LlamaTensorSet& tensors,
                           const ModelOptions& options, int threads, uint64_t gpu_budget);

class LlamaModel {
 public:
  static std::unique_ptr<LlamaModel> load(const std::string& path, ThreadPool& pool, const ModelOptions& options = {});

  const GgufFile& file() const { return file_; }
  const LlamaConfig& config() const { return config_; }
  const Plan& plan() const { return plan_; }
  const LlamaWeights& weights() const { return store_->weights(); }
  WeightStore& store() { return *store_; }  // only with load_weights
  HostArena& arena() { return *arena_; }
  int64_t context() const { return context_; }
  int64_t max_batch() const { return max_batch_; }
  uint64_t weight_bytes() const { return plan_.weight_bytes(); }
  bool tied_output() const { return tied_output_; }

 private:
  explicit LlamaModel(GgufFile file) : file_(std::move(file)) {}
  GgufFile file_;
  LlamaConfig config_;
  Plan plan_;
  int64_t context_ = 0;
  int64_t max_batch_ = 0;
  bool tied_output_ = false;
  std::unique_ptr<HostArena> arena_;
  std::unique_ptr<WeightStore> store_;  // after the arena: destroyed first
};

}  // namespace fi
