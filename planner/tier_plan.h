#pragma once
// Placement over three tiers (DESIGN.md): every weight row block gets a home, GPU (VRAM), HOST
// (pinned RAM) or DISK (read for every token), and every unit (a layer, the output head) a compute
// device for decode and for prefill, from a cost model over a measured Profile.
//   - Fixed costs come off each budget first; a layer's KV cache lives where it decodes.
//   - Layers decoded on the CPU are a contiguous block at the end of the stack (one activation hop
//     there and back per token); the planner tries every size of that block and keeps the fastest.
//   - Within the GPU-decoded units, VRAM is shared by balanced locking: each streams the same
//     number of bytes over PCIe. Host memory is then shared the same way over what is left of
//     every unit, so each reads the same number of bytes from disk. Inside a unit the order is
//     the preservation order (attention first) and the last tensor is split by row groups.
//   - Time per token: reads and uploads overlap compute, but a token's layers run one after
//     another, so max(disk bytes / disk, uploaded bytes / PCIe, CPU-computed bytes / CPU +
//     GPU-computed bytes / GPU matrix-vector rate). The bound is the term that sets it (the larger
//     of cpu and gpu when compute does).
//   - Prefill always runs on the GPU (many tokens per byte moved), the CPU-decoded layers too:
//     their rows are uploaded whole through the device slots and their host KV cache visits a
//     device buffer of one layer's size.
// Like Plan, a TierPlan is an immutable value made from the tensor table and a Profile alone, so
// plans for any machine are made and tested anywhere.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "planner/plan.h"
#include "planner/profile.h"

namespace fi {

enum class ComputeDevice { Gpu, Cpu };
const char* device_name(ComputeDevice device);  // "gpu" or "cpu"

struct TierMatrix {
  const TensorInfo* tensor = nullptr;
  uint64_t rows = 0;
  uint64_t row_bytes = 0;
  uint64_t gpu_rows = 0;   // rows [0, gpu_rows) live in VRAM,
  uint64_t host_rows = 0;  // the next host_rows in pinned host memory, the rest on disk
  // Layout, set once the placement is final:
  uint64_t host_offset = 0;    // where the host rows are in the plan's host-resident weights
  uint64_t disk_offset = 0;    // where the first disk row lands in a host staging slot
  uint64_t device_offset = 0;  // where row gpu_rows lands in a device staging slot (GPU-decoded units)

  uint64_t bytes() const { return rows * row_bytes; }
  uint64_t gpu_bytes() const { return gpu_rows * row_bytes; }
  uint64_t host_bytes() const { return host_rows * row_bytes; }
  uint64_t disk_bytes() const { return bytes() - gpu_bytes() - host_bytes(); }
};

struct TierUnit {
  std::string name;
  std::vector<TierMatrix> matrices;  // preservation order
  ComputeDevice decode = ComputeDevice::Gpu;
  ComputeDevice prefill = ComputeDevice::Gpu;
  uint64_t kv_bytes = 0;  // the layer's KV cache, on its decode device (0 for the head)
  std::vector<ReadSpan> reads;  // the disk rows' aligned reads into a host staging slot

  uint64_t bytes() const;
  uint64_t gpu_bytes() const;
  uint64_t host_bytes() const;
  uint64_t disk_bytes() const;
};

struct TierInput {
  std::vector<PlanInput::Unit> units;  // the layers in order, then the output head (last)
  uint64_t kv_bytes_per_layer = 0;
  uint64_t gpu_budget = 0;
  std::optional<uint64_t> host_budget;  // none: no limit, nothing stays on disk
  std::vector<PlanCost> gpu_fixed;      // activations, cuBLAS workspace, dequantized rows
  std::vector<PlanCost> host_fixed;     // runtime, scratch, small tensors
  int device_slots = 2;                 // device staging slots for units that stream to the GPU
  int host_slots = 3;                   // pinned staging slots for disk reads
  uint64_t row_group = 8;
  bool allow_cpu_decode = true;         // false: every unit decodes on the GPU
};

// Seconds per decoded token each resource needs.
struct TierSeconds {
  double disk = 0.0;
  double pcie = 0.0;
  double cpu = 0.0;
  double gpu = 0.0;
};

struct TierPlan {
  uint64_t gpu_budget = 0;
  std::optional<uint64_t> host_budget;
  std::vector<PlanCost> gpu_costs;   // everything on the GPU but resident weights
  std::vector<PlanCost> host_costs;  // everything in host memory but resident weights
  std::vector<TierUnit> units;
  int device_slots = 0;
  uint64_t device_slot_bytes = 0;  // the most a unit uploads per use (a CPU-decoded layer: all of it, to prefill)
  int host_slots = 0;
  uint64_t host_slot_bytes = 0;    // the largest unit's disk reads
  uint64_t host_weight_bytes = 0;  // the host-resident rows, laid out by TierMatrix::host_offset
  TierSeconds seconds;
  double predicted_decode_tok_s = 0.0;
  std::string bound;  // "disk", "pcie", "cpu" or "gpu"

  uint64_t gpu_used() const;
  uint64_t host_used() const;
  // Bytes moved or computed per decoded token.
  uint64_t disk_bytes_per_token() const;    // read from disk
  uint64_t upload_bytes_per_token() const;  // host to GPU (host-homed and disk-homed bytes of GPU-decoded units)
  uint64_t cpu_bytes_per_token() const;     // weights the CPU computes over
  uint64_t gpu_bytes_per_token() const;     // weights the GPU computes over
  int cpu_layers() const;
};

// Throws Error when the profile lacks GPU measurements or no placement fits the budgets (stating
// each budget's minimum).
TierPlan make_tier_plan(const TierInput& input, const Profile& profile);

}  // namespace fi
