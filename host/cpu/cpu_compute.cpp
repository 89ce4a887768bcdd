#include "host/cpu/cpu_compute.h"

#include <algorithm>
#include <cmath>

#include "cuda/runtime.h"
#include "host/kernels/fp16.h"
#include "host/kernels/quant.h"
#include "host/trace/trace.h"

namespace fi {

namespace {

void rms_norm(const float* x, const float* weight, float* out, int64_t n, double eps) {
  double sum_squares = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_squares += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(sum_squares / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

// Floats of run state per token of a batch (x, normed, q, attended, projected; k, v; gate, up; RoPE).
uint64_t floats_per_token(const LlamaConfig& c) {
  return static_cast<uint64_t>(5 * c.dim + 2 * c.kv_dim() + 2 * c.ffn_dim + c.rope_dim);
}

}  // namespace

uint64_t kv_cache_bytes(const LlamaConfig& config, int64_t context) {
  return static_cast<uint64_t>(config.n_layers) * 2 * static_cast<uint64_t>(context) *
         static_cast<uint64_t>(config.kv_dim()) * sizeof(uint16_t);
}

uint64_t forward_scratch_bytes(const LlamaConfig& config, int64_t context, int64_t max_batch, int threads) {
  const auto batch = static_cast<uint64_t>(max_batch);
  const uint64_t activations = batch * floats_per_token(config) * sizeof(float) + 11 * 64;
  // Quantized activation rows (the largest format is under 1.2 bytes per element) and one
  // attention score row per thread.
  const uint64_t quantized = batch * (static_cast<uint64_t>(std::max(config.dim, config.ffn_dim)) * 5 / 4 + 64);
  const uint64_t scores = static_cast<uint64_t>(threads) * static_cast<uint64_t>(context) * sizeof(float);
  return activations + quantized + scores;
}

std::vector<double> rope_inverse_frequencies(const LlamaConfig& config, const float* frequency_factors) {
  std::vector<double> frequencies;
  for (int64_t i = 0; i < config.rope_dim / 2; ++i) {
    double frequency = std::pow(config.rope_base, -2.0 * static_cast<double>(i) / static_cast<double>(config.rope_dim));
    if (frequency_factors) frequency /= frequency_factors[i];
    frequencies.push_back(frequency);
  }
  return frequencies;
}

CpuCompute::CpuCompute(LlamaModel& model, ThreadPool& pool)
    : CpuCompute(model.config(), model.store(), pool,
                 {reinterpret_cast<uint16_t*>(
                      model.arena().allocate(kv_cache_bytes(model.config(), model.context()), 64, "KV cache")),
                  0, model.context()},
                 model.arena(), model.max_batch()) {}

CpuCompute::CpuCompute(const LlamaConfig& config, HostWeights& weights, ThreadPool& pool, HostKvCache kv,
                       HostArena& scratch, int64_t max_batch)
    : config_(config), store_(weights), weights_(weights.weights()), pool_(pool), kv_(kv),
      inverse_frequencies_(rope_inverse_frequencies(config, weights.weights().rope_freq_factors)) {
  for (int64_t l = 0; l < config.n_layers; ++l) layer_names_.push_back("layer " + std::to_string(l));
  const auto b = static_cast<uint64_t>(max_batch);
  auto floats = [&](int64_t per_token) { return scratch.allocate_array<float>(b * static_cast<uint64_t>(per_token), "scratch"); };
  x_ = floats(config.dim);
  normed_ = floats(config.dim);
  q_ = floats(config.dim);
  k_ = floats(config.kv_dim());
  v_ = floats(config.kv_dim());
  attended_ = floats(config.dim);
  projected_ = floats(config.dim);
  gate_ = floats(config.ffn_dim);
  up_ = floats(config.ffn_dim);
  rope_cos_ = floats(config.rope_dim / 2);
  rope_sin_ = floats(config.rope_dim / 2);
  quantized_.bytes.reserve(b * (static_cast<uint64_t>(std::max(config.dim, config.ffn_dim)) * 5 / 4 + 64));
}

uint16_t* CpuCompute::key_cache(int64_t layer, int64_t position) const {
  return kv_.data + (((layer - kv_.first_layer) * 2) * kv_.context + position) * config_.kv_dim();
}

uint16_t* CpuCompute::value_cache(int64_t layer, int64_t position) const {
  return kv_.data + (((layer - kv_.first_layer) * 2 + 1) * kv_.context + position) * config_.kv_dim();
}

void CpuCompute::begin_batch(std::span<const int32_t> tokens, int64_t position) {
  tokens_ = static_cast<int64_t>(tokens.size());
  position_ = position;
  // Rotation angles depend on the position only: once per batch, not once per layer.
  const int64_t pairs = config_.rope_dim / 2;
  for (int64_t t = 0; t < tokens_; ++t)
    for (int64_t i = 0; i < pairs; ++i) {
      const double angle = static_cast<double>(position_ + t) * inverse_frequencies_[i];
      rope_cos_[t * pairs + i] = static_cast<float>(std::cos(angle));
      rope_sin_[t * pairs + i] = static_cast<float>(std::sin(angle));
    }
}

void CpuCompute::embed(std::span<const int32_t> tokens) {
  for (size_t t = 0; t < tokens.size(); ++t) store_.embed(tokens[t], &x_[t * config_.dim]);
}

void CpuCompute::load_residual(const float* host) { std::copy(host, host + tokens_ * config_.dim, x_); }

void CpuCompute::store_residual(float* host) { std::copy(x_, x_ + tokens_ * config_.dim, host); }

void CpuCompute::set_trace(Trace* trace) {
  trace_ = trace;
  store_.set_trace(trace);
}

void CpuCompute::layer(int64_t layer) {
  const std::string& name = layer_names_[static_cast<size_t>(layer)];
  const cuda::NvtxRange range(name);
  const auto start = Trace::Clock::now();
  const LlamaConfig& c = config_;
  const int64_t n = tokens_, dim = c.dim, kv_dim = c.kv_dim(), pairs = c.rope_dim / 2;
  store_.acquire(layer);
  const LayerWeights& w = weights_.layers[layer];
  for (int64_t t = 0; t < n; ++t) rms_norm(&x_[t * dim], w.attn_norm, &normed_[t * dim], dim, c.rms_eps);
  quantize_batch(pool_, w.wq.type, normed_, dim, n, quantized_);
  matmul(pool_, w.wq, quantized_, q_);
  if (!quantized_.matches(w.wk, n)) quantize_batch(pool_, w.wk.type, normed_, dim, n, quantized_);
  matmul(pool_, w.wk, quantized_, k_);
  if (!quantized_.matches(w.wv, n)) quantize_batch(pool_, w.wv.type, normed_, dim, n, quantized_);
  matmul(pool_, w.wv, quantized_, v_);

  // RoPE on adjacent pairs (GGUF llama layout), then append K and V to the cache.
  for (int64_t t = 0; t < n; ++t) {
    const float* cosines = &rope_cos_[t * pairs];
    const float* sines = &rope_sin_[t * pairs];
    auto rotate = [&](float* head) {
      for (int64_t i = 0; i < pairs; ++i) {
        const float a = head[2 * i], b = head[2 * i + 1];
        head[2 * i] = a * cosines[i] - b * sines[i];
        head[2 * i + 1] = a * sines[i] + b * cosines[i];
      }
    };
    for (int64_t h = 0; h < c.n_heads; ++h) rotate(&q_[t * dim + h * c.head_dim]);
    for (int64_t h = 0; h < c.n_kv_heads; ++h) rotate(&k_[t * kv_dim + h * c.head_dim]);
    uint16_t* key = key_cache(layer, position_ + t);
    uint16_t* value = value_cache(layer, position_ + t);
    for (int64_t i = 0; i < kv_dim; ++i) {
      key[i] = fp32_to_fp16(k_[t * kv_dim + i]);
      value[i] = fp32_to_fp16(v_[t * kv_dim + i]);
    }
  }

  attention(layer, n);
  quantize_batch(pool_, w.wo.type, attended_, dim, n, quantized_);
  matmul(pool_, w.wo, quantized_, projected_);
  for (int64_t i = 0; i < n * dim; ++i) x_[i] += projected_[i];

  for (int64_t t = 0; t < n; ++t) rms_norm(&x_[t * dim], w.ffn_norm, &normed_[t * dim], dim, c.rms_eps);
  quantize_batch(pool_, w.w_gate.type, normed_, dim, n, quantized_);
  matmul(pool_, w.w_gate, quantized_, gate_);
  if (!quantized_.matches(w.w_up, n)) quantize_batch(pool_, w.w_up.type, normed_, dim, n, quantized_);
  matmul(pool_, w.w_up, quantized_, up_);
  for (int64_t i = 0; i < n * c.ffn_dim; ++i) {
    const float g = gate_[i];
    gate_[i] = g / (1.0f + std::exp(-g)) * up_[i];
  }
  quantize_batch(pool_, w.w_down.type, gate_, c.ffn_dim, n, quantized_);
  matmul(pool_, w.w_down, quantized_, projected_);
  store_.release(layer);
  for (int64_t i = 0; i < n * dim; ++i) x_[i] += projected_[i];
  if (trace_) trace_->add(Trace::Track::Cpu, name, start, Trace::Clock::now());
}

void CpuCompute::head(int64_t first, int64_t rows, float* logits) {
  const cuda::NvtxRange range("output head");
  const auto start = Trace::Clock::now();
  const int64_t dim = config_.dim;
  store_.acquire(config_.n_layers);
  if (rows > 0) {
    for (int64_t t = 0; t < rows; ++t)
      rms_norm(&x_[(first + t) * dim], weights_.output_norm, &normed_[t * dim], dim, config_.rms_eps);
    quantize_batch(pool_, weights_.output.type, normed_, dim, rows, quantized_);
    matmul(pool_, weights_.output, quantized_, logits);
  }
  store_.release(config_.n_layers);
  if (trace_) trace_->add(Trace::Track::Cpu, "output head", start, Trace::Clock::now());
}

void CpuCompute::attention(int64_t layer, int64_t tokens) {
  const LlamaConfig& c = config_;
  const int64_t group = c.n_heads / c.n_kv_heads;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  pool_.parallel_for(tokens * c.n_heads, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t t = task / c.n_heads, h = task % c.n_heads;
      const int64_t kv_offset = (h / group) * c.head_dim;
      const int64_t visible = position_ + t + 1;  // causal: this token and everything before it
      const float* query = &q_[t * c.dim + h * c.head_dim];
      if (scores.size() < static_cast<size_t>(visible)) scores.resize(visible);
      float max_score = -INFINITY;
      for (int64_t p = 0; p < visible; ++p) {
        scores[p] = vec_dot(TensorType::F16, c.head_dim, key_cache(layer, p) + kv_offset, query) * scale;
        max_score = std::max(max_score, scores[p]);
      }
      float total = 0.0f;
      for (int64_t p = 0; p < visible; ++p) {
        scores[p] = std::exp(scores[p] - max_score);
        total += scores[p];
      }
      float* out = &attended_[t * c.dim + h * c.head_dim];
      std::fill(out, out + c.head_dim, 0.0f);
      const float inverse_total = 1.0f / total;
      for (int64_t p = 0; p < visible; ++p)
        add_scaled_f16(c.head_dim, scores[p] * inverse_total, value_cache(layer, p) + kv_offset, out);
    }
  });
}

}  // namespace fi
