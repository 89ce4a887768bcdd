#include <algorithm>

#include "host/gpu/gpu_compute.h"
#include "planner/budget.h"

namespace fi {

namespace {

constexpr uint64_t kDeviceAlignment = 256;
constexpr uint64_t kBlasWorkspaceBytes = 32ull << 20;  // cuda::Blas::kWorkspaceBytes, without CUDA headers
constexpr uint64_t kDequantizeChunkElements = 32ull << 20;

uint64_t aligned(uint64_t bytes) { return (bytes + kDeviceAlignment - 1) / kDeviceAlignment * kDeviceAlignment; }

}  // namespace

std::vector<const TensorInfo*> gpu_tensors(const GgufFile& file, const LlamaConfig& config, bool tied_output) {
  const TensorTable& table = file.tensors();
  std::vector<const TensorInfo*> tensors = {table.find("token_embd.weight"), table.find("output_norm.weight")};
  if (!tied_output) tensors.push_back(table.find("output.weight"));
  for (int64_t l = 0; l < config.n_layers; ++l)
    for (const char* name : {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                             "ffn_down"})
      tensors.push_back(table.find("blk." + std::to_string(l) + "." + name + ".weight"));
  return tensors;
}

uint64_t gpu_dequantize_elements(const std::vector<const TensorInfo*>& tensors) {
  uint64_t largest = 0, widest = 0;
  for (const TensorInfo* tensor : tensors)
    if (tensor->n_dims == 2) {
      largest = std::max(largest, tensor->elements());
      widest = std::max(widest, tensor->shape[0]);
    }
  // Whole rows: a chunk of at least one row of the widest matrix.
  return std::min(largest, std::max(kDequantizeChunkElements, widest));
}

GpuMemoryPlan gpu_memory_plan(const GgufFile& file, const LlamaConfig& c, bool tied_output, int64_t context,
                              int64_t max_batch) {
  GpuMemoryPlan plan;
  plan.context = context;
  const std::vector<const TensorInfo*> tensors = gpu_tensors(file, c, tied_output);
  for (const TensorInfo* tensor : tensors) plan.weights += aligned(tensor->bytes);
  plan.kv_cache = aligned(kv_cache_bytes(c, context));
  const auto batch = static_cast<uint64_t>(max_batch);
  const uint64_t widest = static_cast<uint64_t>(std::max(c.dim, c.ffn_dim));
  plan.activations = batch * static_cast<uint64_t>(4 * c.dim + 2 * c.kv_dim() + 2 * c.ffn_dim) * sizeof(float) +
                     batch * sizeof(int32_t) + batch * widest * sizeof(uint16_t) +
                     batch * static_cast<uint64_t>(c.vocab) * sizeof(float) +
                     static_cast<uint64_t>(c.rope_dim / 2) * sizeof(double) + 16 * kDeviceAlignment;
  plan.dequantized = aligned(gpu_dequantize_elements(tensors) * sizeof(uint16_t));
  plan.blas_workspace = kBlasWorkspaceBytes;
  return plan;
}

std::string GpuMemoryPlan::describe() const {
  return "weights " + format_bytes(weights) + ", KV cache " + format_bytes(kv_cache) + " (" + std::to_string(context) +
         " tokens), activations " + format_bytes(activations) + ", dequantized rows " + format_bytes(dequantized) +
         ", cuBLAS workspace " + format_bytes(blas_workspace);
}

}  // namespace fi
