#pragma once
// The backend operations on a CUDA device: every weight the device holds, the KV cache and the run
// state in one device arena of at most the --gpu-mem budget; kernels from cuda/ on one compute
// stream, uploads on another. Builds without CUDA get a stand-in that says there is no device.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "host/model/backend.h"
#include "host/model/model.h"

namespace fi {

class TierStore;
class ThreadPool;

// Where a mixture-of-experts model's expert halves (in_expert_half) compute: on the GPU, with every
// expert resident in VRAM, or on the CPU beside it (the GPU holds none of their tensors).
enum class GpuExperts : uint8_t { OnGpu, OnCpu };

// VRAM beside the dense half (GpuExperts::OnCpu) for a cache of experts, one expert's gate, up and
// down slices per slot, fed by what the router chooses (host/memory/expert_assist.h).
struct GpuExpertCachePlan {
  int64_t slots = 0;
  uint64_t slot_bytes = 0;  // the largest layer's expert
  uint64_t scratch = 0;     // the uploads' staging, the experts' inputs and results, wider dequantized rows
  uint64_t total() const { return static_cast<uint64_t>(slots) * slot_bytes + (slots > 0 ? scratch : 0); }
};

struct GpuOptions {
  uint64_t budget = 0;  // --gpu-mem
  int device = 0;
  // A placement over GPU, host and disk (its host side); null: the whole model on the device
  // (refused when it does not fit the budget). The store outlives the GPU side.
  TierStore* tiers = nullptr;
  GpuExperts experts = GpuExperts::OnGpu;  // a mixture-of-experts model's (OnGpu: refused with tiers)
  GpuExpertCachePlan expert_cache;         // with OnCpu: VRAM for experts beside the dense half
  // Rates the expert cache's cost model weighs an upload against computing on the CPU with.
  double cpu_matvec_GBps = 0.0, h2d_GBps = 0.0, host_copy_GBps = 0.0;
  ThreadPool* pool = nullptr;  // copies experts into pinned staging (null: the calling thread)
};

// Pinned host memory the GPU side uses while loading weights (two buffers, reading and uploading
// in turn).
constexpr uint64_t kGpuLoadBufferBytes = 32ull << 20;
// Device bytes per batch token saying where it goes (cuda::TokenPlace).
constexpr uint64_t kGpuTokenPlaceBytes = 8;


// What the GPU side needs on the device for a model, by kind. Computed without a device, by the
// same definitions the backend allocates with.
struct GpuMemoryPlan {
  uint64_t weights = 0;
  uint64_t kv_cache = 0;
  uint64_t activations = 0;     // run state, logits, half-precision inputs of cuBLAS
  uint64_t dequantized = 0;     // rows of a matrix in half precision for cuBLAS (prefill)
  uint64_t blas_workspace = 0;
  int64_t context = 0;
  int64_t sequences = 1;
  uint64_t total() const { return weights + kv_cache + activations + dequantized + blas_workspace; }
  // "weights 3.6 GiB, KV cache 1.0 GiB (2048 tokens), ..."
  std::string describe() const;
};
// The tensors the GPU side holds: every tensor of the model but the RoPE factors (the model's
// inverse frequencies go up instead) and, with their experts on the CPU, the expert halves of
// mixture-of-experts layers.
std::vector<const TensorInfo*> gpu_tensors(const Model& model, GpuExperts experts = GpuExperts::OnGpu);
// Elements of the buffer cuBLAS products read their half-precision rows from.
uint64_t gpu_dequantize_elements(const std::vector<const TensorInfo*>& tensors);
// Floats per token of the GPU's run state (every activation), and the widest input of a product.
uint64_t gpu_activation_floats(const ModelConfig& config);
int64_t gpu_widest_input(const ModelConfig& config);
// Floats per batch token of the expert products' scratch (OnGpu).
uint64_t gpu_expert_scratch_floats(const ModelConfig& config);
GpuMemoryPlan gpu_memory_plan(const Model& model, GpuExperts experts = GpuExperts::OnGpu);
// The expert slots `vram` bytes beside the dense half hold, at most every expert; none when not
// even one fits beside the scratch.
GpuExpertCachePlan gpu_expert_cache_plan(const Model& model, uint64_t vram);
// Where a layer's expert's gate, up and down slices begin in a slot, and the bytes they take.
std::array<uint64_t, 4> gpu_expert_slot_layout(const Model& model, int64_t layer);
// Pinned host memory the expert cache's uploads and results take (the host plan counts it).
uint64_t gpu_expert_pinned_bytes(const Model& model);

// Throws an Error naming the reason ("no CUDA device: ...") unless CUDA device `device` is usable.
void require_gpu(int device);
// Device memory the arena may take on CUDA device `device` (after require_gpu): what is free now,
// less what the CUDA runtime and cuBLAS allocate beside it (handles, kernels loaded at first
// launch, local memory for spilled registers).
uint64_t gpu_arena_room(int device);
// That room in words, for messages.
inline constexpr char kGpuRoomMeaning[] = "its free memory less what CUDA and cuBLAS take beside it";
// Throws an Error naming the reason when there is no usable device or the budget cannot hold the
// model (stating the minimum).
std::unique_ptr<Backend> make_gpu_backend(const Model& model, const GpuOptions& options);

}  // namespace fi
