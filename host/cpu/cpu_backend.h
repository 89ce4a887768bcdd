#pragma once
// The backend operations on the CPU: weights from HostWeights (the model's WeightStore, or the
// host tier of a three-tier placement), a half-precision KV cache for the layers it computes, the
// batch's run state in a host arena, kernels on the thread pool.
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cuda/runtime.h"
#include "host/kernels/matmul.h"
#include "host/kernels/routing.h"
#include "host/kernels/thread_pool.h"
#include "host/memory/arena.h"
#include "host/memory/expert_assist.h"
#include "host/memory/host_weights.h"
#include "host/memory/kv_cache.h"
#include "host/model/backend.h"
#include "host/model/model.h"
#include "host/trace/trace.h"

namespace fi {

class CpuBackend final : public Backend {
 public:
  // The layers from kv.first_layer on (and the embedding and head, when placed here); run state
  // for batches of up to the model's max_batch tokens from `scratch`.
  CpuBackend(const Model& model, HostWeights& weights, ThreadPool& pool, HostKvCache kv, HostArena& scratch);

  // What the constructor takes from `scratch`.
  static uint64_t scratch_bytes(const ModelConfig& config, int64_t context, int64_t max_batch, int threads);

  const char* device_name() const override { return "cpu"; }
  void begin_batch(std::span<const int32_t> tokens, std::span<const BatchRun> runs) override;
  void embed(std::span<const int32_t> tokens) override;
  void load_residual(const float* host) override;
  void store_residual(float* host) override;
  void begin_unit(int64_t unit) override;
  void end_unit(int64_t unit) override;
  void abandon_batch() override;
  void rms_norm(Activation in, Role weight, Activation out) override;
  void rms_norm_heads(Activation x, Role weight) override;
  void multiply(Activation in, std::initializer_list<Product> products) override;
  void add_bias(Activation x, Role bias) override;
  void rope_and_store_kv(int64_t layer) override;
  void attention(int64_t layer) override;
  void swiglu(Activation gate, Activation up) override;
  void route(Activation logits) override;
  void experts_ffn(Activation in) override;
  void foresee_experts(int64_t layer) override;
  void keep_rows(std::span<const int64_t> rows) override;
  void output_logits(Activation in, float* logits) override;
  void set_trace(Trace* trace) override;
  // Mixture of experts: a device beside this one that computes the experts it holds and those it
  // takes over (null: none).
  void set_expert_assist(ExpertAssist* assist) { assist_ = assist; }

 private:
  float* buffer(Activation activation) const;
  const WeightMatrix& weight(Role role) const { return weights_.at(role, unit_); }
  // Quantizes `in` for w's activation format unless quantized_ already holds it.
  void quantize_for(const WeightMatrix& w, Activation in, bool fresh);
  // Experts available together, the FFN of each for the tokens that chose it: their rows stacked
  // expert after expert, every step one parallel section for all of them.
  void compute_experts(std::span<const ReadyExpert> group, const float* x);
  // One choice's expert output, weighted, into weighted_.
  void weigh(int32_t choice, const float* result);

  const ModelConfig& config_;
  RopeStyle rope_style_;
  HostWeights& store_;
  const ModelWeights& weights_;
  ThreadPool& pool_;
  HostKvCache kv_;
  const std::vector<double>& inverse_frequencies_;  // per rotated pair
  int64_t context_;                                 // positions per sequence
  std::vector<std::string> unit_names_;             // "layer N", "output head": for NVTX and the trace
  int64_t tokens_ = 0;                              // in the current batch
  std::vector<int64_t> positions_;                  // per token of the batch: its position in its sequence
  std::vector<int64_t> cache_begins_;               // per token: its sequence's first cache row
  int64_t unit_ = 0;                                // the unit between begin_unit and end_unit
  std::optional<cuda::NvtxRange> unit_range_;
  Trace::Clock::time_point unit_start_;

  // Run state for one batch, row-major [token][width].
  std::array<float*, kActivationCount> buffers_{};
  float* projected_ = nullptr;  // a product before it is added to the residual stream
  float *rope_cos_, *rope_sin_;  // [token][pair] for the current batch
  float* scores_ = nullptr;       // per thread, [head of its task][position]: attention scores, then weights
  QuantizedBatch quantized_;

  BatchRouting routing_;
  std::vector<int32_t> chosen_experts_;  // distinct, ascending
  std::vector<int32_t> host_experts_;    // of them, those the host computes or hands over
  ExpertAssist* assist_ = nullptr;
  std::vector<ReadyExpert> host_group_;  // of a group of available experts, those the host computes
  std::vector<int64_t> first_rows_;      // per expert of a group and one past: its first stacked row
  int64_t expert_rows_ = 0;              // most stacked rows (choices) the buffers below hold
  float* expert_input_ = nullptr;        // stacked rows: the choices' input rows (batches of tokens)
  float* expert_output_ = nullptr;       // stacked rows: the choices' expert outputs
  float* weighted_ = nullptr;       // [token][choice][dim]: weighted expert outputs before their sum
  // Speculation (batches of up to kForeseenTokens): the residual stream normed for a later layer,
  // its router's logits, the experts they predict.
  float* foreseen_normed_ = nullptr;
  float* foreseen_logits_ = nullptr;
  std::vector<int32_t> foreseen_;
  std::vector<int32_t> foreseen_choice_;  // one token's
  std::vector<float> foreseen_weight_;
};

}  // namespace fi
