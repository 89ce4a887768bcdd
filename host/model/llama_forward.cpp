#include "host/model/llama_forward.h"

#include <algorithm>

#include "host/cpu/cpu_compute.h"
#include "io/error.h"

namespace fi {

LlamaForward::LlamaForward(LlamaModel& model, ThreadPool& pool)
    : LlamaForward(model, std::make_unique<CpuCompute>(model, pool)) {}

namespace {
std::vector<std::unique_ptr<LayerCompute>> one_device(std::unique_ptr<LayerCompute> device) {
  std::vector<std::unique_ptr<LayerCompute>> devices;
  devices.push_back(std::move(device));
  return devices;
}
}  // namespace

LlamaForward::LlamaForward(const LlamaModel& model, std::unique_ptr<LayerCompute> device)
    : LlamaForward(model, one_device(std::move(device)), DevicePlacement::single(model.config().n_layers)) {}

LlamaForward::LlamaForward(const LlamaModel& model, std::vector<std::unique_ptr<LayerCompute>> devices,
                           DevicePlacement placement)
    : config_(model.config()), context_(model.context()), max_batch_(model.max_batch()), devices_(std::move(devices)) {
  const auto layers = static_cast<size_t>(config_.n_layers);
  auto device = [&](size_t index) {
    if (index >= devices_.size()) fail("internal: device %zu of %zu", index, devices_.size());
    return devices_[index].get();
  };
  if (placement.decode.size() != layers || placement.prefill.size() != layers)
    fail("internal: a placement of %zu/%zu layers for %zu", placement.decode.size(), placement.prefill.size(), layers);
  for (size_t l = 0; l < layers; ++l) {
    decode_device_.push_back(device(placement.decode[l]));
    prefill_device_.push_back(device(placement.prefill[l]));
  }
  embed_device_ = device(placement.embed);
  head_device_ = device(placement.head);
}

LlamaForward::~LlamaForward() {
  while (!devices_.empty()) devices_.pop_back();
}

void LlamaForward::eval(std::span<const int32_t> tokens, float* logits, bool all_logits) {
  if (position_ + static_cast<int64_t>(tokens.size()) > context_)
    fail("context is full: %lld tokens do not fit after position %lld (context %lld; raise --ctx)",
         static_cast<long long>(tokens.size()), static_cast<long long>(position_), static_cast<long long>(context_));
  for (int32_t token : tokens)
    if (token < 0 || token >= config_.vocab)
      fail("token id %d is outside the vocabulary (0..%lld)", token, static_cast<long long>(config_.vocab - 1));
  for (size_t begin = 0; begin < tokens.size(); begin += static_cast<size_t>(max_batch_)) {
    const size_t count = std::min(tokens.size() - begin, static_cast<size_t>(max_batch_));
    const bool last_batch = begin + count == tokens.size();
    float* batch_logits = all_logits ? logits + begin * config_.vocab : (last_batch ? logits : nullptr);
    eval_batch(tokens.subspan(begin, count), batch_logits, all_logits);
  }
}

void LlamaForward::eval_batch(std::span<const int32_t> tokens, float* logits, bool all_logits) {
  const auto n = static_cast<int64_t>(tokens.size());
  for (const auto& device : devices_) device->begin_batch(tokens, position_);
  LayerCompute* current = embed_device_;
  auto move_to = [&](LayerCompute* next) {
    if (next == current) return;
    residual_hop_.resize(static_cast<size_t>(n * config_.dim));
    current->store_residual(residual_hop_.data());
    next->load_residual(residual_hop_.data());
    current = next;
  };
  current->embed(tokens);
  const std::vector<LayerCompute*>& layer_device = n == 1 ? decode_device_ : prefill_device_;
  for (int64_t layer = 0; layer < config_.n_layers; ++layer) {
    move_to(layer_device[static_cast<size_t>(layer)]);
    current->layer(layer);
  }
  move_to(head_device_);
  const int64_t first = all_logits ? 0 : n - 1;
  current->head(first, logits ? n - first : 0, logits);
  position_ += n;
}

}  // namespace fi
