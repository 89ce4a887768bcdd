#include "host/model/forward.h"

#include <algorithm>

#include "io/error.h"
#include "io/log.h"

namespace fi {

int64_t activation_width(Activation activation, const ModelConfig& c) {
  switch (activation) {
    case Activation::Residual:
    case Activation::Normed: return c.dim;
    case Activation::Query:
    case Activation::Attended: return c.q_dim();
    case Activation::Key:
    case Activation::Value: return c.kv_dim();
    case Activation::Gate:
    case Activation::Up: return c.has_experts() ? c.n_experts_used * c.expert_ffn_dim : c.ffn_dim;
    case Activation::RouterLogits: return c.n_experts;
  }
  return 0;
}

namespace {
std::vector<std::unique_ptr<Backend>> one_device(std::unique_ptr<Backend> device) {
  std::vector<std::unique_ptr<Backend>> devices;
  devices.push_back(std::move(device));
  return devices;
}
}  // namespace

Forward::Forward(const Model& model, std::unique_ptr<Backend> device)
    : Forward(model, one_device(std::move(device)), DevicePlacement::single(model.config().n_layers)) {}

Forward::Forward(const Model& model, std::vector<std::unique_ptr<Backend>> devices, DevicePlacement placement)
    : model_(model), config_(model.config()), context_(model.context()), max_batch_(model.max_batch()),
      positions_(static_cast<size_t>(model.sequences()), 0), devices_(std::move(devices)) {
  const auto layers = static_cast<size_t>(config_.n_layers);
  auto device = [&](size_t index) {
    if (index >= devices_.size()) fail("internal: device %zu of %zu", index, devices_.size());
    return devices_[index].get();
  };
  if (placement.decode.size() != layers || placement.prefill.size() != layers)
    fail("internal: a placement of %zu/%zu layers for %zu", placement.decode.size(), placement.prefill.size(), layers);
  if (!placement.expert_half.empty() && placement.expert_half.size() != layers)
    fail("internal: expert halves placed for %zu layers of %zu", placement.expert_half.size(), layers);
  for (size_t l = 0; l < layers; ++l) {
    decode_device_.push_back(device(placement.decode[l]));
    prefill_device_.push_back(device(placement.prefill[l]));
    const bool has_experts = model.tensors().layer(static_cast<int64_t>(l), Role::FfnGateInp) != nullptr;
    expert_half_device_.push_back(has_experts && !placement.expert_half.empty() ? device(placement.expert_half[l]) : nullptr);
  }
  embed_device_ = device(placement.embed);
  head_device_ = device(placement.head);
}

Forward::~Forward() {
  while (!devices_.empty()) devices_.pop_back();
}

void Forward::check_tokens(std::span<const int32_t> tokens, int64_t sequence) const {
  if (sequence < 0 || sequence >= sequences())
    fail("internal: sequence %lld of %lld", static_cast<long long>(sequence), static_cast<long long>(sequences()));
  const int64_t position = positions_[static_cast<size_t>(sequence)];
  if (position + static_cast<int64_t>(tokens.size()) > context_)
    fail("context is full: %lld tokens do not fit after position %lld (context %lld; raise --ctx)",
         static_cast<long long>(tokens.size()), static_cast<long long>(position), static_cast<long long>(context_));
  for (int32_t token : tokens)
    if (token < 0 || token >= config_.vocab)
      fail("token id %d is outside the vocabulary (0..%lld)", token, static_cast<long long>(config_.vocab - 1));
}

void Forward::eval(std::span<const int32_t> tokens, float* logits, bool all_logits) {
  check_tokens(tokens, 0);
  for (size_t begin = 0; begin < tokens.size(); begin += static_cast<size_t>(max_batch_)) {
    const size_t count = std::min(tokens.size() - begin, static_cast<size_t>(max_batch_));
    const bool last_batch = begin + count == tokens.size();
    wanted_rows_.clear();
    if (all_logits)
      for (size_t row = 0; row < count; ++row) wanted_rows_.push_back(static_cast<int64_t>(row));
    else if (last_batch && logits)
      wanted_rows_.push_back(static_cast<int64_t>(count) - 1);
    float* batch_logits = all_logits ? logits + begin * config_.vocab : (last_batch ? logits : nullptr);
    const BatchRun run{0, positions_[0], static_cast<int64_t>(count)};
    eval_batch(tokens.subspan(begin, count), std::span<const BatchRun>(&run, 1), wanted_rows_, batch_logits);
    // A long prompt takes a while: a progress line on a terminal.
    if (tokens.size() > static_cast<size_t>(max_batch_))
      log_progress(strprintf("prompt %zu of %zu tokens", begin + count, tokens.size()));
  }
  if (tokens.size() > static_cast<size_t>(max_batch_)) end_progress();
}

void Forward::eval_together(std::span<const SequenceChunk> chunks, float* logits) {
  batch_tokens_.clear();
  batch_runs_.clear();
  wanted_rows_.clear();
  std::vector<bool> seen(positions_.size(), false);
  for (const SequenceChunk& chunk : chunks) {
    check_tokens(chunk.tokens, chunk.sequence);
    if (seen[static_cast<size_t>(chunk.sequence)])
      fail("internal: sequence %lld twice in one pass", static_cast<long long>(chunk.sequence));
    seen[static_cast<size_t>(chunk.sequence)] = true;
    if (chunk.tokens.empty()) {
      if (chunk.logits) fail("internal: logits wanted of an empty chunk");
      continue;
    }
    batch_runs_.push_back({chunk.sequence * context_, positions_[static_cast<size_t>(chunk.sequence)],
                           static_cast<int64_t>(chunk.tokens.size())});
    batch_tokens_.insert(batch_tokens_.end(), chunk.tokens.begin(), chunk.tokens.end());
    if (chunk.logits) wanted_rows_.push_back(static_cast<int64_t>(batch_tokens_.size()) - 1);
  }
  if (static_cast<int64_t>(batch_tokens_.size()) > max_batch_)
    fail("internal: a pass of %zu tokens, more than the batch of %lld", batch_tokens_.size(),
         static_cast<long long>(max_batch_));
  if (batch_tokens_.empty()) return;
  eval_batch(batch_tokens_, batch_runs_, wanted_rows_, logits);
}

void Forward::eval_batch(std::span<const int32_t> tokens, std::span<const BatchRun> runs, std::span<const int64_t> wanted,
                         float* logits) {
  // A failed pass advances no sequence, and the devices start the next one afresh: a long-lived
  // engine (the server) goes on after a read error.
  try {
    run_batch(tokens, runs, wanted, logits);
  } catch (...) {
    for (const auto& device : devices_) {
      try {
        device->abandon_batch();
      } catch (...) {
        // The pass's own error is the one to report; a device that cannot recover fails again
        // on the next pass with its reason.
      }
    }
    throw;
  }
  for (const BatchRun& run : runs) positions_[static_cast<size_t>(run.cache_begin / context_)] += run.count;
}

void Forward::run_batch(std::span<const int32_t> tokens, std::span<const BatchRun> runs, std::span<const int64_t> wanted,
                        float* logits) {
  const auto n = static_cast<int64_t>(tokens.size());
  pass_tokens_ = n;
  for (const auto& device : devices_) device->begin_batch(tokens, runs);
  Backend* current = embed_device_;
  auto move_to = [&](Backend* next) {
    if (next == current) return;
    move_residual(*current, *next, n);
    current = next;
  };
  current->embed(tokens);
  // One token per sequence is decode however many sequences share the pass: the weights are read
  // once for all of them, as they would be for one.
  const bool decoding = std::all_of(runs.begin(), runs.end(), [](const BatchRun& run) { return run.count == 1; });
  const std::vector<Backend*>& layer_device = decoding ? decode_device_ : prefill_device_;
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    move_to(layer_device[static_cast<size_t>(l)]);
    Backend* ffn_device = expert_half_device_[static_cast<size_t>(l)];
    layer(*current, ffn_device ? *ffn_device : *current, l);
    if (ffn_device) current = ffn_device;
  }
  move_to(head_device_);
  head(*current, wanted, n, logits);
}

void Forward::move_residual(Backend& from, Backend& to, int64_t tokens) {
  residual_hop_.resize(static_cast<size_t>(tokens * config_.dim));
  from.store_residual(residual_hop_.data());
  to.load_residual(residual_hop_.data());
}

// One transformer block, pre-norm: attention, then the feed-forward network, each added to the
// residual stream. The architecture's description says which optional pieces a layer has. A unit
// spans the work of one device: a layer whose feed-forward half computes elsewhere is two.
void Forward::layer(Backend& b, Backend& ffn_device, int64_t l) {
  using enum Activation;
  const ModelTensors& tensors = model_.tensors();
  auto has = [&](Role role) { return tensors.layer(l, role) != nullptr; };
  auto bias = [&](Activation x, Role role) {
    if (has(role)) b.add_bias(x, role);
  };
  b.begin_unit(l);
  b.rms_norm(Residual, Role::AttnNorm, Normed);
  b.multiply(Normed, {{Role::AttnQ, Query}, {Role::AttnK, Key}, {Role::AttnV, Value}});
  bias(Query, Role::AttnQBias);
  bias(Key, Role::AttnKBias);
  bias(Value, Role::AttnVBias);
  if (has(Role::AttnQNorm)) b.rms_norm_heads(Query, Role::AttnQNorm);
  if (has(Role::AttnKNorm)) b.rms_norm_heads(Key, Role::AttnKNorm);
  b.rope_and_store_kv(l);
  b.attention(l);
  b.multiply(Attended, {{Role::AttnOutput, Residual, true}});
  bias(Residual, Role::AttnOutputBias);

  if (has(Role::FfnGateInp)) {
    // Mixture of experts: the router chooses, only the chosen experts compute.
    if (&ffn_device != &b) {
      b.end_unit(l);
      move_residual(b, ffn_device, pass_tokens_);
      ffn_device.begin_unit(l);
    }
    Backend& f = ffn_device;
    f.rms_norm(Residual, Role::FfnNorm, Normed);
    f.multiply(Normed, {{Role::FfnGateInp, RouterLogits}});
    f.route(RouterLogits);
    if (l + 1 < config_.n_layers && tensors.layer(l + 1, Role::FfnGateInp)) f.foresee_experts(l + 1);
    f.experts_ffn(Normed);
    f.end_unit(l);
    return;
  }
  b.rms_norm(Residual, Role::FfnNorm, Normed);
  b.multiply(Normed, {{Role::FfnGate, Gate}, {Role::FfnUp, Up}});
  bias(Gate, Role::FfnGateBias);
  bias(Up, Role::FfnUpBias);
  b.swiglu(Gate, Up);
  b.multiply(Gate, {{Role::FfnDown, Residual, true}});
  bias(Residual, Role::FfnDownBias);
  b.end_unit(l);
}

// The final norm and the output head for the tokens whose logits are wanted. The unit passes even
// when none are (rows 0): streamed weights arrive on a fixed schedule.
void Forward::head(Backend& b, std::span<const int64_t> wanted, int64_t tokens, float* logits) {
  b.begin_unit(config_.n_layers);
  if (!wanted.empty() && logits) {
    if (static_cast<int64_t>(wanted.size()) != tokens) b.keep_rows(wanted);
    b.rms_norm(Activation::Residual, Role::OutputNorm, Activation::Normed);
    b.output_logits(Activation::Normed, logits);
  }
  b.end_unit(config_.n_layers);
}

}  // namespace fi
