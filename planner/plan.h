#pragma once
// Host-memory placement for a model larger than its budget (the FlexInfer paper's policy):
//   1. fixed costs come off the budget first (KV cache, scratch, runtime, small tensors, and the
//      staging ring for the chosen prefetch depth);
//   2. balanced locking: every unit (a layer, the output head) streams the same number of bytes S,
//      so reads overlap compute evenly; S is the smallest that fits;
//   3. flexible preservation: inside a unit, the tensors listed first stay resident first, and the
//      tensor where the budget runs out is split by row groups (resident rows first, the rest
//      streamed), so the budget is filled to within a row group per unit.
// The Plan is an immutable value computed from the tensor table alone: printable and testable
// without the model's bytes.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/tensor_table.h"

namespace fi {

struct PlanCost {
  std::string what;
  uint64_t bytes = 0;
};

struct PlanMatrix {
  const TensorInfo* tensor = nullptr;
  uint64_t rows = 0;
  uint64_t row_bytes = 0;
  uint64_t resident_rows = 0;  // rows [0, resident_rows) stay in memory, the rest are streamed
  uint64_t slot_offset = 0;    // where streamed row `resident_rows` lands in a staging slot

  uint64_t bytes() const { return rows * row_bytes; }
  uint64_t resident_bytes() const { return resident_rows * row_bytes; }
  uint64_t streamed_bytes() const { return bytes() - resident_bytes(); }
  // Memory the resident rows take: the 4 KiB-aligned span around them, as direct reads need.
  uint64_t resident_span_bytes() const;
};

// One aligned read of a unit's streamed bytes into a staging slot.
struct ReadSpan {
  uint64_t file_offset = 0;
  uint64_t bytes = 0;
  uint64_t slot_offset = 0;
};

// Aligned reads covering file ranges [begin, end) given in file order, merged where their 4 KiB
// spans touch, laid out one after another in a slot; slot_offsets[i] is where range i's first byte
// lands. Shared by both planners.
struct FileRange {
  uint64_t begin = 0;
  uint64_t end = 0;
};
std::vector<ReadSpan> aligned_reads(const std::vector<FileRange>& ranges, std::vector<uint64_t>* slot_offsets);

struct PlanUnit {
  std::string name;                 // "blk.3", "output"
  std::vector<PlanMatrix> matrices;  // in preservation order
  std::vector<ReadSpan> reads;       // empty when nothing streams
  uint64_t bytes() const;
  uint64_t resident_bytes() const;
  uint64_t resident_span_bytes() const;
  uint64_t streamed_bytes() const;
  uint64_t read_bytes() const;  // streamed bytes plus the alignment around them
};

// Mixture of experts: the stacked expert tensors of each layer (gate, up, down; none in a dense
// layer), each (layer, expert) slice of them a unit of its own.
struct PlanExperts {
  int64_t count = 0;  // experts per layer
  int64_t used = 0;   // chosen per token
  std::vector<std::vector<const TensorInfo*>> layers;

  bool empty() const { return count == 0; }
  // The file ranges of one expert's slices, in the layer's tensor order.
  std::vector<FileRange> ranges(int64_t layer, int64_t expert) const;
  // Slot memory that holds any one expert with the alignment direct reads need.
  uint64_t slot_bytes() const;
  uint64_t total_bytes() const;  // every expert of every layer
};

struct PlanInput {
  struct Unit {
    std::string name;
    std::vector<const TensorInfo*> matrices;  // preservation order: the first stays resident first
  };
  std::vector<Unit> units;                       // compute order
  std::vector<const TensorInfo*> always_resident;  // small tensors (norms) that never stream
  // Tensors loaded only when there is no budget (with one, what is needed of them is read on
  // demand: the token embedding, of which a token needs one row).
  std::vector<const TensorInfo*> resident_without_budget;
  std::vector<PlanCost> fixed;                   // KV cache, scratch, runtime
  std::optional<uint64_t> host_budget;           // none: everything resident, no limit
  std::string minimum_hint;                      // appended to the below-minimum error
  int max_depth = 3;                             // staging slots when streaming
  uint64_t row_group = 8;                        // split points are multiples of this many rows
  // Keep kernel_allowance(budget) of a budget for the kernel's own memory (a cgroup counts it).
  bool kernel_allowance = false;
  // When set and the whole model does not fit, the units' matrices leave out the expert tensors
  // and the experts are cached instead (dense parts placed first, experts fill what remains).
  PlanExperts experts;
};

// Experts read on demand into a cache of `slots` slots of `slot_bytes`, kept by what the router
// chooses; none when every expert is resident in its layer's unit.
struct ExpertCachePlan {
  PlanExperts experts;
  int64_t slots = 0;
  uint64_t slot_bytes = 0;
  uint64_t bytes() const { return static_cast<uint64_t>(slots) * slot_bytes; }
  // Expert bytes a token multiplies (its chosen experts in every layer).
  uint64_t used_bytes_per_token() const;
  // Expert bytes a token reads from disk when every expert is equally likely (a skewed router
  // reads less): the chosen experts times the fraction the cache cannot hold.
  uint64_t uniform_read_bytes_per_token() const;
};

// The experts a one-token decode may have in flight at once: a layer's misses and the next layer's
// predicted experts, each at most the `used` the token chooses.
constexpr int64_t experts_in_flight(int64_t used) { return 2 * used; }

// The fewest expert slots a cache may have: room for every expert in flight, so reads of the next
// layer's proceed while this layer's compute.
inline int64_t minimum_expert_slots(const PlanExperts& experts) { return experts_in_flight(experts.used); }

struct Plan {
  std::optional<uint64_t> host_budget;
  std::vector<PlanCost> fixed;  // including the always-resident tensors
  std::vector<const TensorInfo*> always_resident;
  std::vector<PlanUnit> units;
  int depth = 0;                // staging slots; 0 when nothing streams
  uint64_t slot_bytes = 0;
  uint64_t minimum_host_bytes = 0;  // the smallest budget that runs this model with these fixed costs
  ExpertCachePlan expert_cache;
  uint64_t kernel_bytes = 0;  // the kernel's allowance (one of the fixed costs), with a budget

  bool caches_experts() const { return expert_cache.slots > 0; }

  bool streams() const { return depth > 0; }
  uint64_t fixed_bytes() const;
  uint64_t weight_bytes() const;
  uint64_t resident_bytes() const;       // weight bytes kept in memory
  uint64_t resident_span_bytes() const;  // the memory they take
  uint64_t staging_bytes() const { return static_cast<uint64_t>(depth) * slot_bytes; }
  uint64_t streamed_bytes_per_token() const;
  uint64_t read_bytes_per_token() const;
  uint64_t host_bytes() const { return fixed_bytes() + resident_span_bytes() + staging_bytes() + expert_cache.bytes(); }
};

// The kernel's memory for a process using `bytes`: page tables (8 bytes per 4 KiB page) and
// io_uring's records of registered buffers, about 0.2% each.
inline uint64_t kernel_allowance(uint64_t bytes) { return bytes / 255 + 1; }

// Throws Error when the budget is below the minimum working set, stating the minimum.
Plan make_plan(const PlanInput& input);

}  // namespace fi
