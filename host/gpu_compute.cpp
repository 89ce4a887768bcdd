#include "host/gpu_compute.h"

#include <algorithm>
#include <cstring>

#include "cuda/blas.h"
#include "cuda/device_info.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "io/direct_file.h"
#include "io/error.h"
#include "planner/budget.h"

namespace fi {

namespace {

constexpr uint64_t kUploadBufferBytes = 64ull << 20;
constexpr int kUploadBuffers = 2;  // one filling from the file while the other uploads

class GpuCompute final : public LayerCompute {
 public:
  GpuCompute(const LlamaModel& model, const GpuMemoryPlan& plan);

  const char* device_name() const override { return "gpu"; }
  void begin_batch(std::span<const int32_t> tokens, int64_t position) override;
  void embed(std::span<const int32_t> tokens) override;
  void load_residual(const float* host) override;
  void store_residual(float* host) override;
  void layer(int64_t index) override;
  void head(int64_t first, int64_t rows, float* logits) override;

 private:
  struct Layer {
    const float* attn_norm = nullptr;
    const float* ffn_norm = nullptr;
    cuda::DeviceMatrix wq, wk, wv, wo, w_gate, w_up, w_down;
  };
  void upload_weights(const LlamaModel& model, const std::vector<const TensorInfo*>& tensors);
  void matmul(const cuda::DeviceMatrix& w, const float* x, int64_t tokens, float* y, bool accumulate = false);
  uint16_t* key_cache(int64_t layer) const { return kv_cache_ + layer * 2 * context_ * config_.kv_dim(); }
  uint16_t* value_cache(int64_t layer) const { return key_cache(layer) + context_ * config_.kv_dim(); }

  const LlamaConfig& config_;
  int64_t context_;
  int64_t max_batch_;
  cuda::AttentionShape shape_;
  cuda::Stream compute_;
  cuda::Stream upload_;
  std::unique_ptr<cuda::DeviceArena> arena_;
  std::unique_ptr<cuda::Blas> blas_;

  std::vector<Layer> layers_;
  cuda::DeviceMatrix embedding_, output_;
  const float* output_norm_ = nullptr;
  const double* inverse_frequencies_ = nullptr;
  uint16_t* kv_cache_ = nullptr;
  int32_t* tokens_device_ = nullptr;
  float *x_, *normed_, *q_, *k_, *v_, *attended_, *gate_, *up_, *logits_;
  uint16_t* half_inputs_ = nullptr;
  uint16_t* dequantized_ = nullptr;
  uint64_t dequantized_elements_ = 0;
  int64_t tokens_ = 0;
  int64_t position_ = 0;
};

GpuCompute::GpuCompute(const LlamaModel& model, const GpuMemoryPlan& plan)
    : config_(model.config()), context_(model.context()), max_batch_(model.max_batch()) {
  const LlamaConfig& c = config_;
  shape_ = {c.n_heads, c.n_kv_heads, c.head_dim, c.rope_dim};
  arena_ = std::make_unique<cuda::DeviceArena>(plan.total());
  cuda::DeviceArena& arena = *arena_;
  blas_ = std::make_unique<cuda::Blas>(compute_, arena.allocate(plan.blas_workspace, "cuBLAS workspace"),
                                       plan.blas_workspace);

  const std::vector<const TensorInfo*> tensors = gpu_tensors(model.file(), c, model.tied_output());
  upload_weights(model, tensors);

  kv_cache_ = static_cast<uint16_t*>(arena.allocate(plan.kv_cache, "KV cache"));
  const auto batch = static_cast<uint64_t>(max_batch_);
  auto floats = [&](int64_t per_token) { return arena.allocate_array<float>(batch * static_cast<uint64_t>(per_token), "activations"); };
  x_ = floats(c.dim);
  normed_ = floats(c.dim);
  q_ = floats(c.dim);
  k_ = floats(c.kv_dim());
  v_ = floats(c.kv_dim());
  attended_ = floats(c.dim);
  gate_ = floats(c.ffn_dim);
  up_ = floats(c.ffn_dim);
  logits_ = floats(c.vocab);
  tokens_device_ = arena.allocate_array<int32_t>(batch, "tokens");
  half_inputs_ = arena.allocate_array<uint16_t>(batch * static_cast<uint64_t>(std::max(c.dim, c.ffn_dim)), "half inputs");
  dequantized_elements_ = gpu_dequantize_elements(tensors);
  dequantized_ = arena.allocate_array<uint16_t>(dequantized_elements_, "dequantized rows");

  std::vector<float> factors;
  if (const TensorInfo* info = model.file().tensors().find("rope_freqs.weight")) {
    factors.resize(info->elements());
    DirectFile file(model.file().path(), false);
    std::vector<uint8_t> span(align_up(info->file_offset + info->bytes, kDirectAlignment) -
                              align_down(info->file_offset, kDirectAlignment));
    file.read(span.data(), align_down(info->file_offset, kDirectAlignment), span.size());
    std::memcpy(factors.data(), span.data() + info->file_offset % kDirectAlignment, info->bytes);
  }
  const std::vector<double> frequencies = rope_inverse_frequencies(c, factors.empty() ? nullptr : factors.data());
  auto* device_frequencies = arena.allocate_array<double>(frequencies.size(), "RoPE frequencies");
  cuda::copy_to_device_async(device_frequencies, frequencies.data(), frequencies.size() * sizeof(double), compute_);
  inverse_frequencies_ = device_frequencies;
  compute_.synchronize();
}

void GpuCompute::upload_weights(const LlamaModel& model, const std::vector<const TensorInfo*>& tensors) {
  cuda::NvtxRange range("upload weights");
  std::vector<const TensorInfo*> in_file_order = tensors;
  std::sort(in_file_order.begin(), in_file_order.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->file_offset < b->file_offset; });
  std::vector<std::pair<const TensorInfo*, uint8_t*>> placed;
  for (const TensorInfo* tensor : in_file_order)
    placed.emplace_back(tensor, static_cast<uint8_t*>(arena_->allocate(tensor->bytes, tensor->name.c_str())));

  DirectFile file(model.file().path(), true);
  std::vector<std::unique_ptr<cuda::PinnedBuffer>> buffers;
  std::vector<std::unique_ptr<cuda::Event>> uploaded;
  for (int i = 0; i < kUploadBuffers; ++i) {
    buffers.push_back(std::make_unique<cuda::PinnedBuffer>(kUploadBufferBytes));
    uploaded.push_back(std::make_unique<cuda::Event>());
    uploaded.back()->record(upload_);
  }
  int next = 0;
  for (const auto& [tensor, destination] : placed) {
    const uint64_t begin = tensor->file_offset, end = tensor->file_offset + tensor->bytes;
    for (uint64_t offset = align_down(begin, kDirectAlignment); offset < end; offset += kUploadBufferBytes) {
      const uint64_t length = std::min(kUploadBufferBytes, align_up(end, kDirectAlignment) - offset);
      uploaded[next]->synchronize();  // the buffer's previous upload has left it
      uint8_t* buffer = buffers[next]->data();
      file.read(buffer, offset, length);
      const uint64_t from = std::max(offset, begin), to = std::min(offset + length, end);
      cuda::copy_to_device_async(destination + (from - begin), buffer + (from - offset), to - from, upload_);
      uploaded[next]->record(upload_);
      next = (next + 1) % kUploadBuffers;
    }
  }
  upload_.synchronize();

  auto device_data = [&](const std::string& name) -> const uint8_t* {
    for (const auto& [tensor, destination] : placed)
      if (tensor->name == name) return destination;
    fail("internal: tensor '%s' was not uploaded", name.c_str());
  };
  auto matrix = [&](const std::string& name) {
    const TensorInfo* info = model.file().tensors().find(name);
    return cuda::DeviceMatrix{info->type, static_cast<int64_t>(info->shape[1]), static_cast<int64_t>(info->shape[0]),
                              row_bytes(info->type, info->shape[0]), device_data(name)};
  };
  auto layer_name = [](int64_t l, const char* name) { return "blk." + std::to_string(l) + "." + name + ".weight"; };
  embedding_ = matrix("token_embd.weight");
  output_ = model.tied_output() ? embedding_ : matrix("output.weight");
  output_norm_ = reinterpret_cast<const float*>(device_data("output_norm.weight"));
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    Layer layer;
    layer.attn_norm = reinterpret_cast<const float*>(device_data(layer_name(l, "attn_norm")));
    layer.ffn_norm = reinterpret_cast<const float*>(device_data(layer_name(l, "ffn_norm")));
    layer.wq = matrix(layer_name(l, "attn_q"));
    layer.wk = matrix(layer_name(l, "attn_k"));
    layer.wv = matrix(layer_name(l, "attn_v"));
    layer.wo = matrix(layer_name(l, "attn_output"));
    layer.w_gate = matrix(layer_name(l, "ffn_gate"));
    layer.w_up = matrix(layer_name(l, "ffn_up"));
    layer.w_down = matrix(layer_name(l, "ffn_down"));
    layers_.push_back(layer);
  }
}

void GpuCompute::begin_batch(std::span<const int32_t> tokens, int64_t position) {
  tokens_ = static_cast<int64_t>(tokens.size());
  position_ = position;
}

void GpuCompute::embed(std::span<const int32_t> tokens) {
  cuda::copy_to_device_async(tokens_device_, tokens.data(), tokens.size_bytes(), compute_);
  cuda::embed(embedding_, tokens_device_, tokens_, x_, compute_);
}

void GpuCompute::load_residual(const float* host) {
  cuda::copy_to_device_async(x_, host, static_cast<uint64_t>(tokens_ * config_.dim) * sizeof(float), compute_);
}

void GpuCompute::store_residual(float* host) {
  cuda::copy_to_host_async(host, x_, static_cast<uint64_t>(tokens_ * config_.dim) * sizeof(float), compute_);
  compute_.synchronize();
}

// Short batches (decode) read each weight once per token batch with the matrix-vector kernels;
// longer ones go through cuBLAS on half-precision inputs (FP32 accumulation), a fixed number of
// rows at a time dequantized (or copied, for F16) into one buffer: the products then have the same
// shapes wherever the rows live, so every placement gives the same bits.
void GpuCompute::matmul(const cuda::DeviceMatrix& w, const float* x, int64_t n, float* y, bool accumulate) {
  if (n <= cuda::kMaxMatvecTokens) {
    cuda::matvec(w, x, n, y, compute_, accumulate);
    return;
  }
  cuda::floats_to_half(x, n * w.cols, half_inputs_, compute_);
  const int64_t chunk_rows = std::max<int64_t>(1, static_cast<int64_t>(dequantized_elements_) / w.cols);
  for (int64_t first = 0; first < w.rows; first += chunk_rows) {
    const int64_t rows = std::min(chunk_rows, w.rows - first);
    cuda::dequantize_to_half(w, first, rows, dequantized_, compute_);
    blas_->gemm(dequantized_, rows, w.cols, half_inputs_, n, y + first, w.rows, accumulate);
  }
}

void GpuCompute::layer(int64_t index) {
  const cuda::NvtxRange range("compute layer " + std::to_string(index));
  const LlamaConfig& c = config_;
  const Layer& w = layers_[static_cast<size_t>(index)];
  const int64_t n = tokens_;
  cuda::rms_norm(x_, w.attn_norm, normed_, n, c.dim, c.rms_eps, compute_);
  matmul(w.wq, normed_, n, q_);
  matmul(w.wk, normed_, n, k_);
  matmul(w.wv, normed_, n, v_);
  cuda::rope_and_store_kv(q_, k_, v_, n, position_, inverse_frequencies_, shape_, key_cache(index),
                          value_cache(index), compute_);
  cuda::attention(q_, key_cache(index), value_cache(index), n, position_, shape_, attended_, compute_);
  matmul(w.wo, attended_, n, x_, true);  // the residual add
  cuda::rms_norm(x_, w.ffn_norm, normed_, n, c.dim, c.rms_eps, compute_);
  matmul(w.w_gate, normed_, n, gate_);
  matmul(w.w_up, normed_, n, up_);
  cuda::swiglu(gate_, up_, n * c.ffn_dim, compute_);
  matmul(w.w_down, gate_, n, x_, true);
}

void GpuCompute::head(int64_t first, int64_t rows, float* logits) {
  if (rows == 0) return;
  const cuda::NvtxRange range("compute head");
  cuda::rms_norm(x_ + first * config_.dim, output_norm_, normed_, rows, config_.dim, config_.rms_eps, compute_);
  matmul(output_, normed_, rows, logits_);
  cuda::copy_to_host_async(logits, logits_, static_cast<uint64_t>(rows * config_.vocab) * sizeof(float), compute_);
  compute_.synchronize();
}

}  // namespace

std::unique_ptr<LayerCompute> make_gpu_compute(const LlamaModel& model, const GpuOptions& options) {
  std::string why;
  const std::vector<cuda::DeviceInfo> devices = cuda::list_devices(&why);
  if (devices.empty()) fail("%s; leave out --gpu-mem to run on the CPU", why.c_str());
  if (options.device < 0 || options.device >= static_cast<int>(devices.size()))
    fail("CUDA device %d does not exist (%zu present)", options.device, devices.size());
  const cuda::DeviceInfo& device = devices[static_cast<size_t>(options.device)];
  if (model.config().head_dim > cuda::kMaxHeadDim)
    fail("the GPU path takes head dimensions up to %lld; this model's is %lld", static_cast<long long>(cuda::kMaxHeadDim),
         static_cast<long long>(model.config().head_dim));
  const GpuMemoryPlan plan =
      gpu_memory_plan(model.file(), model.config(), model.tied_output(), model.context(), model.max_batch());
  if (options.budget < plan.total())
    fail("--gpu-mem %s is below the %s this model needs on the GPU (%s); a smaller --ctx shrinks the KV cache",
         format_bytes(options.budget).c_str(), format_bytes(plan.total()).c_str(), plan.describe().c_str());
  cuda::use_device(options.device);
  uint64_t free_bytes = 0, total_bytes = 0;
  cuda::device_memory(&free_bytes, &total_bytes);
  if (plan.total() > free_bytes)
    fail("the model needs %s on the GPU (%s) but %s has only %s free", format_bytes(plan.total()).c_str(),
         plan.describe().c_str(), device.name.c_str(), format_bytes(free_bytes).c_str());
  return std::make_unique<GpuCompute>(model, plan);
}

}  // namespace fi
