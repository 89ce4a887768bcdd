#include "host/cpu/cpu_backend.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>

#include "host/kernels/fp16.h"
#include "host/kernels/quant.h"
#include "host/kernels/routing.h"
#include "io/error.h"

namespace fi {

namespace {

void rms_norm_row(const float* x, const float* weight, float* out, int64_t n, double eps) {
  double sum_squares = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_squares += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(sum_squares / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

// gate = silu(gate) * up, elementwise: the one formula of the dense and the expert FFN.
void swiglu_rows(float* gate, const float* up, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const float value = gate[i];
    gate[i] = value / (1.0f + std::exp(-value)) * up[i];
  }
}

// Bytes of quantized activation rows for a batch (the largest format is under 1.2 bytes per
// element), of the widest input a product takes.
uint64_t quantized_bytes(const ModelConfig& c, int64_t max_batch) {
  const int64_t widest = std::max({c.dim, c.q_dim(), c.ffn_dim, c.expert_ffn_dim});
  return static_cast<uint64_t>(max_batch) * (static_cast<uint64_t>(widest) * 5 / 4 + 64);
}

// An expert's input and output rows, and every choice's weighted output (none when dense).
uint64_t expert_floats_per_token(const ModelConfig& c) {
  if (!c.has_experts()) return 0;
  return 2 * static_cast<uint64_t>(std::max(c.dim, c.expert_ffn_dim)) + static_cast<uint64_t>(c.n_experts_used * c.dim);
}

// The routing's bookkeeping per token: expert and weight of each choice, the choices by expert.
uint64_t routing_bytes(const ModelConfig& c, int64_t max_batch) {
  return static_cast<uint64_t>(max_batch * c.n_experts_used) * (2 * sizeof(int32_t) + sizeof(float)) +
         static_cast<uint64_t>(c.n_experts + 1) * sizeof(int64_t);
}

// Floats of run state per token: every activation, the product before the residual add, RoPE's
// cosines and sines.
uint64_t floats_per_token(const ModelConfig& c) {
  uint64_t floats = static_cast<uint64_t>(c.dim + c.rope_dim);
  for (size_t a = 0; a < kActivationCount; ++a) floats += static_cast<uint64_t>(activation_width(static_cast<Activation>(a), c));
  return floats + expert_floats_per_token(c);
}

constexpr uint64_t kScratchArrays = kActivationCount + 9;  // each 64-byte aligned

// Query heads that share a KV head, computed together by one thread (the kernels' widest pass):
// each cached row is converted once for all of them.
constexpr int64_t kMaxHeadsPerTask = 8;

int64_t heads_per_task(const ModelConfig& c) { return std::min(kMaxHeadsPerTask, c.n_heads / c.n_kv_heads); }

// Speculation pays for decode and small batches; a large batch chooses most experts anyway and
// reads each once, as soon as its router has run.
constexpr int64_t kForeseenTokens = 4;

uint64_t foresight_bytes(const ModelConfig& c) {
  if (!c.has_experts()) return 0;
  return static_cast<uint64_t>(kForeseenTokens * (c.dim + c.n_experts)) * sizeof(float) +
         static_cast<uint64_t>((kForeseenTokens + 1) * c.n_experts_used) * (sizeof(int32_t) + sizeof(float));
}

}  // namespace

uint64_t CpuBackend::scratch_bytes(const ModelConfig& config, int64_t context, int64_t max_batch, int threads) {
  const uint64_t activations =
      static_cast<uint64_t>(max_batch) * floats_per_token(config) * sizeof(float) + kScratchArrays * 64;
  // Each thread's attention scores: a row per head of its task.
  const uint64_t scores = static_cast<uint64_t>(threads) * static_cast<uint64_t>(heads_per_task(config)) *
                          static_cast<uint64_t>(context) * sizeof(float);
  return activations + quantized_bytes(config, max_batch) + scores + routing_bytes(config, max_batch) +
         foresight_bytes(config);
}

CpuBackend::CpuBackend(const Model& model, HostWeights& weights, ThreadPool& pool, HostKvCache kv, HostArena& scratch)
    : config_(model.config()), rope_style_(model.config().arch->rope_style), store_(weights),
      weights_(weights.weights()), pool_(pool), kv_(kv), inverse_frequencies_(model.inverse_frequencies()),
      context_(model.context()) {
  for (int64_t l = 0; l < config_.n_layers; ++l) unit_names_.push_back("layer " + std::to_string(l));
  unit_names_.push_back("output head");
  const auto batch = static_cast<uint64_t>(model.max_batch());
  auto floats = [&](int64_t per_token) { return scratch.allocate_array<float>(batch * static_cast<uint64_t>(per_token), "scratch"); };
  for (size_t a = 0; a < kActivationCount; ++a) buffers_[a] = floats(activation_width(static_cast<Activation>(a), config_));
  projected_ = floats(config_.dim);
  scores_ = scratch.allocate_array<float>(
      static_cast<uint64_t>(pool_.size()) * static_cast<uint64_t>(heads_per_task(config_) * context_), "scratch");
  rope_cos_ = floats(config_.rope_dim / 2);
  rope_sin_ = floats(config_.rope_dim / 2);
  if (config_.has_experts()) {
    const int64_t widest = std::max(config_.dim, config_.expert_ffn_dim);
    expert_input_ = floats(widest);
    expert_output_ = floats(widest);
    expert_rows_ = static_cast<int64_t>(batch);
    host_group_.reserve(static_cast<size_t>(config_.n_experts));
    first_rows_.reserve(static_cast<size_t>(config_.n_experts) + 1);
    weighted_ = floats(config_.n_experts_used * config_.dim);
    const auto choices = batch * static_cast<uint64_t>(config_.n_experts_used);
    routing_.expert.reserve(choices);
    routing_.weight.reserve(choices);
    routing_.by_expert.reserve(choices);
    routing_.begin.reserve(static_cast<size_t>(config_.n_experts + 1));
    foreseen_normed_ = scratch.allocate_array<float>(static_cast<uint64_t>(kForeseenTokens * config_.dim), "scratch");
    foreseen_logits_ = scratch.allocate_array<float>(static_cast<uint64_t>(kForeseenTokens * config_.n_experts), "scratch");
    foreseen_.reserve(static_cast<size_t>(kForeseenTokens * config_.n_experts_used));
    foreseen_choice_.resize(static_cast<size_t>(config_.n_experts_used));
    foreseen_weight_.resize(static_cast<size_t>(config_.n_experts_used));
  }
  quantized_.bytes.reserve(quantized_bytes(config_, model.max_batch()));
  positions_.reserve(batch);
  cache_begins_.reserve(batch);
}

float* CpuBackend::buffer(Activation activation) const { return buffers_[static_cast<size_t>(activation)]; }

void CpuBackend::begin_batch(std::span<const int32_t> tokens, std::span<const BatchRun> runs) {
  tokens_ = static_cast<int64_t>(tokens.size());
  positions_.clear();
  cache_begins_.clear();
  for (const BatchRun& run : runs)
    for (int64_t i = 0; i < run.count; ++i) {
      positions_.push_back(run.position + i);
      cache_begins_.push_back(run.cache_begin);
    }
  if (static_cast<int64_t>(positions_.size()) != tokens_)
    fail("internal: %zu run tokens for a batch of %lld", positions_.size(), static_cast<long long>(tokens_));
  // Rotation angles depend on the position only: once per batch, not once per layer.
  const int64_t pairs = config_.rope_dim / 2;
  for (int64_t t = 0; t < tokens_; ++t)
    for (int64_t i = 0; i < pairs; ++i) {
      const double angle = static_cast<double>(positions_[static_cast<size_t>(t)]) * inverse_frequencies_[static_cast<size_t>(i)];
      rope_cos_[t * pairs + i] = static_cast<float>(std::cos(angle));
      rope_sin_[t * pairs + i] = static_cast<float>(std::sin(angle));
    }
}

void CpuBackend::embed(std::span<const int32_t> tokens) {
  float* x = buffer(Activation::Residual);
  for (size_t t = 0; t < tokens.size(); ++t) store_.embed(tokens[t], &x[t * config_.dim]);
}

void CpuBackend::load_residual(const float* host) {
  std::copy(host, host + tokens_ * config_.dim, buffer(Activation::Residual));
}

void CpuBackend::store_residual(float* host) {
  const float* x = buffer(Activation::Residual);
  std::copy(x, x + tokens_ * config_.dim, host);
}

void CpuBackend::set_trace(Trace* trace) {
  trace_ = trace;
  store_.set_trace(trace);
}

void CpuBackend::begin_unit(int64_t unit) {
  unit_ = unit;
  unit_range_.emplace(unit_names_[static_cast<size_t>(unit)]);
  unit_start_ = Trace::Clock::now();
  store_.acquire(unit);
}

void CpuBackend::end_unit(int64_t unit) {
  store_.release(unit);
  if (trace_) trace_->add(Trace::Track::Cpu, unit_names_[static_cast<size_t>(unit)], unit_start_, Trace::Clock::now());
  unit_range_.reset();
}

void CpuBackend::abandon_batch() {
  unit_range_.reset();
  store_.abandon_pass();
}

void CpuBackend::rms_norm(Activation in, Role weight, Activation out) {
  const float* x = buffer(in);
  float* y = buffer(out);
  const float* w = weights_.unit(weight, unit_).vector(weight);
  const int64_t width = activation_width(in, config_);
  for (int64_t t = 0; t < tokens_; ++t) rms_norm_row(&x[t * width], w, &y[t * width], width, config_.rms_eps);
}

void CpuBackend::rms_norm_heads(Activation x, Role weight) {
  float* values = buffer(x);
  const float* w = weights_.unit(weight, unit_).vector(weight);
  const int64_t heads = tokens_ * activation_width(x, config_) / config_.head_dim;
  for (int64_t h = 0; h < heads; ++h) {
    float* head = &values[h * config_.head_dim];
    rms_norm_row(head, w, head, config_.head_dim, config_.rms_eps);
  }
}

void CpuBackend::quantize_for(const WeightMatrix& w, Activation in, bool fresh) {
  if (fresh || !quantized_.matches(w, tokens_)) quantize_batch(pool_, w.type, buffer(in), w.cols, tokens_, quantized_);
}

void CpuBackend::multiply(Activation in, std::initializer_list<Product> products) {
  // The first product quantizes `in`; the others reuse it when their format matches, and products
  // into activations of their own that share one quantization run in one parallel section.
  bool fresh = true;
  for (auto p = products.begin(); p != products.end(); ++p) {
    const WeightMatrix& w = weight(p->weight);
    quantize_for(w, in, fresh);
    fresh = false;
    if (!p->accumulate) {
      std::array<MatrixProduct, 4> together;
      size_t count = 0;
      together[count++] = {&w, buffer(p->out)};
      for (auto next = p + 1; count < together.size() && next != products.end() && !next->accumulate &&
                              quantized_.matches(weight(next->weight), tokens_);
           ++next, ++p)
        together[count++] = {&weight(next->weight), buffer(next->out)};
      matmul(pool_, std::span<const MatrixProduct>(together.data(), count), quantized_);
      continue;
    }
    if (p->out != Activation::Residual) fail("internal: products accumulate into the residual stream only");
    matmul(pool_, w, quantized_, projected_);
    float* x = buffer(p->out);
    for (int64_t i = 0; i < tokens_ * w.rows; ++i) x[i] += projected_[i];
  }
}

void CpuBackend::add_bias(Activation x, Role bias) {
  float* values = buffer(x);
  const float* b = weights_.unit(bias, unit_).vector(bias);
  const int64_t width = activation_width(x, config_);
  for (int64_t t = 0; t < tokens_; ++t)
    for (int64_t i = 0; i < width; ++i) values[t * width + i] += b[i];
}

void CpuBackend::rope_and_store_kv(int64_t layer) {
  const ModelConfig& c = config_;
  const int64_t q_dim = c.q_dim(), kv_dim = c.kv_dim(), pairs = c.rope_dim / 2;
  float* q = buffer(Activation::Query);
  float* k = buffer(Activation::Key);
  const float* v = buffer(Activation::Value);
  // Llama rotates adjacent pairs (2i, 2i+1); NeoX-style models the halves (i, i + rope_dim/2).
  const int64_t stride = rope_style_ == RopeStyle::Neox ? 1 : 2;
  const int64_t partner = rope_style_ == RopeStyle::Neox ? pairs : 1;
  for (int64_t t = 0; t < tokens_; ++t) {
    const float* cosines = &rope_cos_[t * pairs];
    const float* sines = &rope_sin_[t * pairs];
    auto rotate = [&](float* head) {
      for (int64_t i = 0; i < pairs; ++i) {
        float* first = head + i * stride;
        const float a = first[0], b = first[partner];
        first[0] = a * cosines[i] - b * sines[i];
        first[partner] = a * sines[i] + b * cosines[i];
      }
    };
    for (int64_t h = 0; h < c.n_heads; ++h) rotate(&q[t * q_dim + h * c.head_dim]);
    for (int64_t h = 0; h < c.n_kv_heads; ++h) rotate(&k[t * kv_dim + h * c.head_dim]);
    const int64_t row = cache_begins_[static_cast<size_t>(t)] + positions_[static_cast<size_t>(t)];
    uint16_t* key = kv_.keys(layer, row);
    uint16_t* value = kv_.values(layer, row);
    for (int64_t i = 0; i < kv_dim; ++i) {
      key[i] = fp32_to_fp16(k[t * kv_dim + i]);
      value[i] = fp32_to_fp16(v[t * kv_dim + i]);
    }
  }
}

void CpuBackend::attention(int64_t layer) {
  const ModelConfig& c = config_;
  const int64_t group = c.n_heads / c.n_kv_heads, q_dim = c.q_dim(), kv_dim = kv_.kv_dim;
  const float scale = c.attention_scale > 0.0 ? static_cast<float>(c.attention_scale)
                                              : static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  const float* q = buffer(Activation::Query);
  float* attended = buffer(Activation::Attended);
  // A task: one token's heads that share a KV head, at most a thread's score rows of them; fewer
  // while there would be under two tasks per thread. Every split gives the same bits.
  int64_t heads = heads_per_task(c);
  while (heads > 1 && tokens_ * c.n_kv_heads * ((group + heads - 1) / heads) < 2 * pool_.size()) heads = (heads + 1) / 2;
  const int64_t parts = (group + heads - 1) / heads;
  // Each thread's score rows hold a context's positions (checked here: a worker must not throw).
  for (int64_t position : positions_)
    if (position >= context_) fail("internal: attention at position %lld, beyond the context", static_cast<long long>(position));
  std::atomic<int64_t> next{0};
  pool_.run([&](int thread) {
    float* scores = scores_ + static_cast<int64_t>(thread) * heads_per_task(c) * context_;
    for (int64_t task = next.fetch_add(1, std::memory_order_relaxed); task < tokens_ * c.n_kv_heads * parts;
         task = next.fetch_add(1, std::memory_order_relaxed)) {
      const int64_t t = task / (c.n_kv_heads * parts), kv_head = task / parts % c.n_kv_heads;
      const int64_t first_head = kv_head * group + task % parts * heads;
      const auto count = static_cast<int>(std::min(heads, (kv_head + 1) * group - first_head));
      const int64_t visible = positions_[static_cast<size_t>(t)] + 1;  // causal: this token and everything before it
      const int64_t first_row = cache_begins_[static_cast<size_t>(t)];
      const int64_t kv_offset = kv_head * c.head_dim;
      attention_scores_f16(c.head_dim, kv_.keys(layer, first_row) + kv_offset, static_cast<size_t>(kv_dim), visible,
                           &q[t * q_dim + first_head * c.head_dim], static_cast<size_t>(c.head_dim), count, scores,
                           static_cast<size_t>(visible));
      // Each head's weights replace its scores.
      for (int h = 0; h < count; ++h) attention_softmax(&scores[h * visible], visible, scale);
      float* out = &attended[t * q_dim + first_head * c.head_dim];
      std::fill(out, out + count * c.head_dim, 0.0f);
      attention_values_f16(c.head_dim, kv_.values(layer, first_row) + kv_offset, static_cast<size_t>(kv_dim), visible,
                           scores, static_cast<size_t>(visible), count, out, static_cast<size_t>(c.head_dim));
    }
  });
}

void CpuBackend::swiglu(Activation gate, Activation up) {
  swiglu_rows(buffer(gate), buffer(up), tokens_ * activation_width(gate, config_));
}

void CpuBackend::route(Activation logits) {
  routing_.route(buffer(logits), tokens_, config_.n_experts, config_.n_experts_used);
}

void CpuBackend::weigh(int32_t choice, const float* result) {
  const float scale = routing_.weight[static_cast<size_t>(choice)];
  float* out = &weighted_[choice * config_.dim];
  for (int64_t r = 0; r < config_.dim; ++r) out[r] = result[r] * scale;
}

void CpuBackend::compute_experts(std::span<const ReadyExpert> group, const float* x) {
  const ModelConfig& c = config_;
  const int64_t k = c.n_experts_used, width = c.expert_ffn_dim;
  // Stacked rows, [row][width]: gate and up results, then the down product's input.
  float* gate = buffer(Activation::Gate);
  float* up = buffer(Activation::Up);
  // Expert i's choices are stacked rows [first_rows_[i], first_rows_[i + 1]).
  first_rows_.assign(1, 0);
  for (const ReadyExpert& ready : group)
    first_rows_.push_back(first_rows_.back() + static_cast<int64_t>(routing_.choices_of(ready.expert).size()));
  const int64_t rows = first_rows_.back();
  // One token's row is every expert's input (decode); a batch's choices have theirs gathered.
  const bool one_token = tokens_ == 1;
  const WeightMatrix& first_gate = group.front().weights->gate;
  if (one_token) {
    quantize_batch(pool_, first_gate.type, x, first_gate.cols, 1, quantized_);
  } else {
    for (size_t i = 0; i < group.size(); ++i) {
      const std::span<const int32_t> choices = routing_.choices_of(group[i].expert);
      for (size_t j = 0; j < choices.size(); ++j) {
        const float* row = &x[choices[j] / k * first_gate.cols];
        std::copy(row, row + first_gate.cols, &expert_input_[(first_rows_[i] + static_cast<int64_t>(j)) * first_gate.cols]);
      }
    }
    quantize_batch(pool_, first_gate.type, expert_input_, first_gate.cols, rows, quantized_);
  }
  MatrixProduct products[kMaxProductsPerSection];
  size_t count = 0;
  // Expert i's product of `w` into its stacked rows of `out`, from its input rows (or decode's one).
  auto product = [&](const WeightMatrix& w, float* out, size_t i, bool shared_input) {
    products[count++] = {&w, out + first_rows_[i] * w.rows, shared_input ? 0 : first_rows_[i],
                         first_rows_[i + 1] - first_rows_[i]};
  };
  auto run = [&] {
    matmul(pool_, std::span<const MatrixProduct>(products, count), quantized_);
    count = 0;
  };
  // Gate and up in one section when they take the same quantized rows.
  const bool together = quantized_.matches(group.front().weights->up, quantized_.tokens);
  for (size_t i = 0; i < group.size(); ++i) {
    product(group[i].weights->gate, gate, i, one_token);
    if (together) product(group[i].weights->up, up, i, one_token);
  }
  run();
  if (!together) {
    const WeightMatrix& first_up = group.front().weights->up;
    quantize_batch(pool_, first_up.type, one_token ? x : expert_input_, first_up.cols, one_token ? 1 : rows, quantized_);
    for (size_t i = 0; i < group.size(); ++i) product(group[i].weights->up, up, i, one_token);
    run();
  }
  swiglu_rows(gate, up, rows * width);
  quantize_batch(pool_, group.front().weights->down.type, gate, width, rows, quantized_);
  for (size_t i = 0; i < group.size(); ++i) product(group[i].weights->down, expert_output_, i, false);
  run();
  for (size_t i = 0; i < group.size(); ++i) {
    const std::span<const int32_t> choices = routing_.choices_of(group[i].expert);
    for (size_t j = 0; j < choices.size(); ++j)
      weigh(choices[j], &expert_output_[(first_rows_[i] + static_cast<int64_t>(j)) * c.dim]);
  }
}

void CpuBackend::experts_ffn(Activation in) {
  const ModelConfig& c = config_;
  const int64_t k = c.n_experts_used;
  const float* x = buffer(in);
  chosen_experts_.clear();
  for (int32_t e = 0; e < c.n_experts; ++e)
    if (!routing_.choices_of(e).empty()) chosen_experts_.push_back(e);

  // Experts the assist holds compute there meanwhile; the host never needs them.
  std::span<const int32_t> host_experts = chosen_experts_;
  if (assist_) {
    assist_->begin_layer(unit_, x, tokens_, chosen_experts_, routing_);
    host_experts_.clear();
    for (int32_t e : chosen_experts_)
      if (!assist_->holds(e)) host_experts_.push_back(e);
    host_experts = host_experts_;
  }
  store_.use_experts(unit_, host_experts, tokens_ <= kForeseenTokens, [&](std::span<const ReadyExpert> ready) {
    host_group_.clear();
    for (const ReadyExpert& expert : ready) {
      if (!assist_) {
        host_group_.push_back(expert);
        continue;
      }
      // Beside an assist, each in turn: an upload waits for the ones before it, and the host's
      // experts computed between them hide that wait.
      if (!assist_->receive(expert.expert, *expert.weights)) compute_experts(std::span<const ReadyExpert>(&expert, 1), x);
    }
    // As many at once as one section's products and the stacked buffers take.
    for (size_t first = 0; first < host_group_.size();) {
      size_t end = first;
      int64_t rows = 0;
      while (end < host_group_.size() && end - first < kMaxProductsPerSection / 2) {
        const auto choices = static_cast<int64_t>(routing_.choices_of(host_group_[end].expert).size());
        if (end > first && rows + choices > expert_rows_) break;
        rows += choices;
        ++end;
      }
      compute_experts(std::span<const ReadyExpert>(host_group_).subspan(first, end - first), x);
      first = end;
    }
  });
  if (assist_) assist_->finish_layer([&](int32_t choice, const float* result) { weigh(choice, result); });
  // As llama.cpp sums: the choices in order, then the sum onto the residual stream.
  float* residual = buffer(Activation::Residual);
  for (int64_t t = 0; t < tokens_; ++t)
    for (int64_t i = 0; i < c.dim; ++i) {
      float sum = weighted_[(t * k) * c.dim + i];
      for (int64_t j = 1; j < k; ++j) sum += weighted_[(t * k + j) * c.dim + i];
      residual[t * c.dim + i] += sum;
    }
}

void CpuBackend::foresee_experts(int64_t layer) {
  const ModelConfig& c = config_;
  if (!store_.wants_expert_predictions() || tokens_ > kForeseenTokens) return;
  const WeightMatrix* norm = store_.lasting(layer, Role::FfnNorm);
  const WeightMatrix* router = store_.lasting(layer, Role::FfnGateInp);
  if (!norm || !router) return;
  const float* x = buffer(Activation::Residual);
  for (int64_t t = 0; t < tokens_; ++t)
    rms_norm_row(&x[t * c.dim], reinterpret_cast<const float*>(norm->data), &foreseen_normed_[t * c.dim], c.dim,
                 c.rms_eps);
  // quantized_ is free here: the experts' first product quantizes its own input.
  quantize_batch(pool_, router->type, foreseen_normed_, c.dim, tokens_, quantized_);
  matmul(pool_, *router, quantized_, foreseen_logits_);
  foreseen_.clear();
  for (int64_t t = 0; t < tokens_; ++t) {
    route_top_k(&foreseen_logits_[t * c.n_experts], c.n_experts, c.n_experts_used, foreseen_choice_.data(),
                foreseen_weight_.data());
    for (int32_t expert : foreseen_choice_)
      if (std::find(foreseen_.begin(), foreseen_.end(), expert) == foreseen_.end() &&
          !(assist_ && assist_->caches(layer, expert)))
        foreseen_.push_back(expert);
  }
  store_.expect_experts(layer, foreseen_);
}

void CpuBackend::keep_rows(std::span<const int64_t> rows) {
  // Ascending rows move down in place: row r to row i <= r.
  float* x = buffer(Activation::Residual);
  for (size_t i = 0; i < rows.size(); ++i)
    if (rows[i] != static_cast<int64_t>(i))
      std::copy(x + rows[i] * config_.dim, x + (rows[i] + 1) * config_.dim, x + static_cast<int64_t>(i) * config_.dim);
  tokens_ = static_cast<int64_t>(rows.size());
}

void CpuBackend::output_logits(Activation in, float* logits) {
  const WeightMatrix& w = weights_.globals[Role::Output];
  quantize_for(w, in, true);
  matmul(pool_, w, quantized_, logits);
}

}  // namespace fi
