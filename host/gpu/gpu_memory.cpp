#include <algorithm>
#include <array>

#include "host/gpu/gpu_backend.h"
#include "host/kernels/repack.h"
#include "host/memory/kv_cache.h"
#include "planner/budget.h"

namespace fi {

namespace {

constexpr uint64_t kDeviceAlignment = 256;
constexpr uint64_t kBlasWorkspaceBytes = 32ull << 20;  // cuda::Blas::kWorkspaceBytes, without CUDA headers
constexpr uint64_t kDequantizeChunkElements = 32ull << 20;

uint64_t aligned(uint64_t bytes) { return (bytes + kDeviceAlignment - 1) / kDeviceAlignment * kDeviceAlignment; }

// Every interleaved type's permutation (uint16 each), as the expert cache uploads them.
uint64_t interleaved_layouts_bytes() {
  uint64_t bytes = 0;
  for (TensorType type : kTensorTypes)
    if (interleavable_type(type)) bytes += aligned(interleaved_offsets(type).size() * sizeof(uint16_t));
  return bytes;
}

}  // namespace

std::vector<const TensorInfo*> gpu_tensors(const Model& model, GpuExperts experts) {
  const ModelTensors& all = model.tensors();
  std::vector<const TensorInfo*> tensors;
  for (const TensorInfo* tensor : all.all()) {
    if (tensor == all.global(Role::RopeFrequencies)) continue;
    const NamedRole named = all.locate(tensor);
    if (experts == GpuExperts::OnCpu && named.layer >= 0 && in_expert_half(named.role) &&
        all.layer(named.layer, Role::FfnGateInp))
      continue;
    tensors.push_back(tensor);
  }
  return tensors;
}

uint64_t gpu_dequantize_elements(const std::vector<const TensorInfo*>& tensors) {
  uint64_t largest = 0, widest = 0;
  for (const TensorInfo* tensor : tensors)
    if (tensor->n_dims == 2) {
      largest = std::max(largest, tensor->elements());
      widest = std::max(widest, tensor->shape[0]);
    } else if (tensor->n_dims == 3) {  // stacked experts: a slice at a time
      widest = std::max(widest, tensor->shape[0]);
    }
  // Whole rows: a chunk of at least one row of the widest matrix.
  return std::min(largest, std::max(kDequantizeChunkElements, widest));
}

uint64_t gpu_activation_floats(const ModelConfig& config) {
  uint64_t floats = 0;
  for (size_t a = 0; a < kActivationCount; ++a) floats += static_cast<uint64_t>(activation_width(static_cast<Activation>(a), config));
  return floats;
}

int64_t gpu_widest_input(const ModelConfig& config) {
  int64_t widest = 0;
  for (Activation input : {Activation::Normed, Activation::Attended, Activation::Gate})
    widest = std::max(widest, activation_width(input, config));
  return widest;
}

uint64_t gpu_expert_scratch_floats(const ModelConfig& config) {
  if (!config.has_experts()) return 0;
  // An expert's gathered inputs and its results, every choice's result rows, the choices' indices
  // (two) and weights.
  return static_cast<uint64_t>(2 * config.dim + config.n_experts_used * (config.dim + 3));
}

GpuMemoryPlan gpu_memory_plan(const Model& model, GpuExperts experts) {
  const ModelConfig& c = model.config();
  GpuMemoryPlan plan;
  plan.context = model.context();
  const std::vector<const TensorInfo*> tensors = gpu_tensors(model, experts);
  for (const TensorInfo* tensor : tensors) plan.weights += aligned(tensor->bytes);
  plan.kv_cache = aligned(kv_cache_bytes(c, model.kv_rows()));
  plan.sequences = model.sequences();
  const auto batch = static_cast<uint64_t>(model.max_batch());
  plan.activations = batch * gpu_activation_floats(c) * sizeof(float) + batch * (sizeof(int32_t) + kGpuTokenPlaceBytes) +
                     batch * static_cast<uint64_t>(gpu_widest_input(c)) * sizeof(uint16_t) +
                     batch * static_cast<uint64_t>(c.vocab) * sizeof(float) +
                     static_cast<uint64_t>(c.rope_dim / 2) * sizeof(double) + 16 * kDeviceAlignment;
  if (c.has_experts() && experts == GpuExperts::OnGpu) plan.activations += batch * gpu_expert_scratch_floats(c) * sizeof(float) + 8 * kDeviceAlignment;
  plan.dequantized = aligned(gpu_dequantize_elements(tensors) * sizeof(uint16_t));
  plan.blas_workspace = kBlasWorkspaceBytes;
  return plan;
}

std::array<uint64_t, 4> gpu_expert_slot_layout(const Model& model, int64_t layer) {
  std::array<uint64_t, 4> offsets{};
  const std::array<Role, 3> roles = {Role::FfnGateExps, Role::FfnUpExps, Role::FfnDownExps};
  for (size_t i = 0; i < roles.size(); ++i) {
    const TensorInfo* tensor = model.tensors().layer(layer, roles[i]);
    offsets[i + 1] = offsets[i] + (tensor ? aligned(tensor->bytes / static_cast<uint64_t>(model.config().n_experts)) : 0);
  }
  return offsets;
}

GpuExpertCachePlan gpu_expert_cache_plan(const Model& model, uint64_t vram) {
  const ModelConfig& c = model.config();
  GpuExpertCachePlan plan;
  if (!c.has_experts()) return plan;
  for (int64_t l = 0; l < c.n_layers; ++l) plan.slot_bytes = std::max(plan.slot_bytes, gpu_expert_slot_layout(model, l)[3]);
  const auto batch = static_cast<uint64_t>(model.max_batch());
  const uint64_t choices = batch * static_cast<uint64_t>(c.n_experts_used), dim = static_cast<uint64_t>(c.dim);
  const uint64_t all_dequantized = gpu_dequantize_elements(gpu_tensors(model, GpuExperts::OnGpu));
  const uint64_t dense_dequantized = gpu_dequantize_elements(gpu_tensors(model, GpuExperts::OnCpu));
  // Upload staging and the slot of uploads the cache does not keep.
  plan.scratch = 2 * plan.slot_bytes + aligned(choices * dim * sizeof(float)) + aligned(batch * dim * sizeof(float)) +
                 aligned(choices * sizeof(int32_t)) + interleaved_layouts_bytes() +
                 aligned((all_dequantized > dense_dequantized ? all_dequantized : 0) * sizeof(uint16_t)) +
                 16 * kDeviceAlignment;
  if (vram < plan.scratch + plan.slot_bytes || plan.slot_bytes == 0) return plan;
  uint64_t every_expert = 0;
  for (int64_t l = 0; l < c.n_layers; ++l)
    if (model.tensors().layer(l, Role::FfnGateExps)) every_expert += static_cast<uint64_t>(c.n_experts);
  plan.slots = static_cast<int64_t>(std::min(every_expert, (vram - plan.scratch) / plan.slot_bytes));
  return plan;
}

uint64_t gpu_expert_pinned_bytes(const Model& model) {
  const ModelConfig& c = model.config();
  if (!c.has_experts()) return 0;
  const GpuExpertCachePlan plan = gpu_expert_cache_plan(model, 0);
  const uint64_t choices = static_cast<uint64_t>(model.max_batch()) * static_cast<uint64_t>(c.n_experts_used);
  return 2 * plan.slot_bytes + choices * (static_cast<uint64_t>(c.dim) * sizeof(float) + sizeof(int32_t));
}

std::string GpuMemoryPlan::describe() const {
  const std::string tokens = sequences > 1 ? std::to_string(sequences) + " sequences of " + std::to_string(context) + " tokens"
                                           : std::to_string(context) + " tokens";
  return "weights " + format_bytes(weights) + ", KV cache " + format_bytes(kv_cache) + " (" + tokens +
         "), activations " + format_bytes(activations) + ", dequantized rows " + format_bytes(dequantized) +
         ", cuBLAS workspace " + format_bytes(blas_workspace);
}

}  // namespace fi
