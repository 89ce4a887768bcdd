#include "planner/tier_plan.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <numeric>

#include "io/direct_file.h"
#include "io/error.h"
#include "planner/budget.h"

namespace fi {

const char* device_name(ComputeDevice device) { return device == ComputeDevice::Gpu ? "gpu" : "cpu"; }

namespace {

template <typename Item, typename Field>
uint64_t sum(const std::vector<Item>& items, Field field) {
  return std::accumulate(items.begin(), items.end(), uint64_t{0},
                         [&](uint64_t total, const Item& item) { return total + std::invoke(field, item); });
}

// Rows of `m` a tier may take within `budget` bytes: whole matrices, else row groups.
uint64_t rows_within(const TierMatrix& m, uint64_t free_rows, uint64_t budget, uint64_t row_group) {
  if (budget >= free_rows * m.row_bytes) return free_rows;
  return std::min(free_rows, budget / (row_group * m.row_bytes) * row_group);
}

// VRAM first: about `target` bytes of the unit in preservation order.
void place_gpu(TierUnit& unit, uint64_t target, uint64_t row_group) {
  for (TierMatrix& m : unit.matrices) {
    m.gpu_rows = rows_within(m, m.rows, target, row_group);
    m.host_rows = 0;
    target -= m.gpu_bytes();
  }
}

// Then host memory: about `target` bytes of what the GPU did not take.
void place_host(TierUnit& unit, uint64_t target, uint64_t row_group) {
  for (TierMatrix& m : unit.matrices) {
    m.host_rows = rows_within(m, m.rows - m.gpu_rows, target, row_group);
    target -= m.host_bytes();
  }
}

uint64_t upload_bytes(const TierUnit& unit) { return unit.host_bytes() + unit.disk_bytes(); }

// Each matrix's uploaded rows start 256-byte aligned in a device slot: the GPU kernels load a
// block's fields up to 16 bytes at a time, whatever the rows before them came to.
constexpr uint64_t kSlotAlignment = 256;

// A unit's room in a device slot: its uploaded rows (`whole`: every row, as prefill uploads a
// CPU-decoded unit), each matrix's aligned.
uint64_t slot_bytes(const TierUnit& unit, bool whole = false) {
  uint64_t end = 0;
  for (const TierMatrix& m : unit.matrices) end = align_up(end, kSlotAlignment) + (whole ? m.bytes() : m.host_bytes() + m.disk_bytes());
  return end;
}

// A unit's disk bytes as read: each streamed piece through its 4 KiB-aligned span.
uint64_t disk_read_bytes(const TierUnit& unit) {
  uint64_t bytes = 0;
  for (const TierMatrix& m : unit.matrices)
    if (m.disk_bytes() > 0) bytes += m.disk_bytes() + 2 * kDirectAlignment;
  return bytes;
}

// The smallest per-unit cap in [0, high] whose memory fits `available` (memory falls as the cap
// rises, up to `high`), or nullopt.
std::optional<uint64_t> smallest_cap(uint64_t high, uint64_t available, const std::function<uint64_t(uint64_t)>& memory) {
  if (memory(high) > available) return std::nullopt;
  if (memory(0) <= available) return 0;
  uint64_t low = 0;  // does not fit
  while (high - low > 1) {
    const uint64_t middle = low + (high - low) / 2;
    (memory(middle) <= available ? high : low) = middle;
  }
  return high;
}

// The size of the n-th largest unit (n from 1): caps above it only grow the staging slots.
uint64_t nth_largest(std::vector<uint64_t> sizes, int n) {
  if (sizes.empty()) return 0;
  std::sort(sizes.rbegin(), sizes.rend());
  return sizes[std::min<size_t>(static_cast<size_t>(std::max(n, 1)) - 1, sizes.size() - 1)];
}

struct Attempt {
  std::vector<TierUnit> units;
  std::vector<PlanCost> gpu_costs, host_costs;
};

// The placement with the last `cpu_layers` layers decoded on the CPU, or nullopt if it does not fit.
std::optional<Attempt> place(const TierInput& input, const std::vector<TierUnit>& blank, size_t cpu_layers) {
  Attempt attempt{blank, input.gpu_fixed, input.host_fixed};
  const size_t layers = blank.size() - 1;
  std::vector<TierUnit*> gpu_units, all_units;
  // The CPU-decoded layers prefill on the GPU too, all their rows uploaded: the device slots hold
  // the largest of them whole.
  uint64_t prefill_slot = 0;
  for (size_t i = 0; i < blank.size(); ++i) {
    TierUnit& unit = attempt.units[i];
    const bool on_cpu = i < layers && i >= layers - cpu_layers;
    unit.decode = on_cpu ? ComputeDevice::Cpu : ComputeDevice::Gpu;
    unit.prefill = ComputeDevice::Gpu;
    all_units.push_back(&unit);
    if (on_cpu) prefill_slot = std::max(prefill_slot, slot_bytes(unit, true));
    else gpu_units.push_back(&unit);
  }
  const uint64_t gpu_kv = input.kv_bytes_per_layer * (layers - cpu_layers);
  const uint64_t host_kv = input.kv_bytes_per_layer * cpu_layers;
  attempt.gpu_costs.push_back({"KV cache of the GPU-decoded layers", gpu_kv});
  if (cpu_layers > 0)
    attempt.gpu_costs.push_back({"KV cache visiting from the host (prefill)", input.kv_bytes_per_layer});
  attempt.host_costs.push_back({"KV cache of the CPU-decoded layers", host_kv});

  // VRAM: every GPU-decoded unit uploads at most `cap` bytes per token.
  const uint64_t gpu_fixed = sum(attempt.gpu_costs, &PlanCost::bytes);
  if (gpu_fixed > input.gpu_budget) return std::nullopt;
  auto gpu_memory = [&](uint64_t cap) {
    uint64_t resident = 0, slot = prefill_slot;
    for (TierUnit* unit : gpu_units) {
      const uint64_t total = unit->bytes();
      place_gpu(*unit, total > cap ? total - cap : 0, input.row_group);
      resident += unit->gpu_bytes();
      slot = std::max(slot, slot_bytes(*unit));
    }
    return resident + static_cast<uint64_t>(input.device_slots) * slot;
  };
  std::vector<uint64_t> gpu_sizes;
  for (TierUnit* unit : gpu_units) gpu_sizes.push_back(unit->bytes());
  const auto gpu_cap = smallest_cap(nth_largest(gpu_sizes, input.device_slots), input.gpu_budget - gpu_fixed, gpu_memory);
  if (!gpu_cap) return std::nullopt;
  gpu_memory(*gpu_cap);
  uint64_t device_slot = prefill_slot;
  for (TierUnit* unit : gpu_units) device_slot = std::max(device_slot, slot_bytes(*unit));
  if (device_slot > 0)
    attempt.gpu_costs.push_back({"device staging slots", static_cast<uint64_t>(input.device_slots) * device_slot});

  // Host memory: what VRAM did not take; every unit reads at most `cap` bytes from disk.
  const uint64_t host_fixed = sum(attempt.host_costs, &PlanCost::bytes);
  if (!input.host_budget) {
    for (TierUnit* unit : all_units) place_host(*unit, std::numeric_limits<uint64_t>::max(), input.row_group);
    return attempt;
  }
  if (host_fixed > *input.host_budget) return std::nullopt;
  auto host_memory = [&](uint64_t cap) {
    uint64_t resident = 0, slot = 0;
    for (TierUnit* unit : all_units) {
      const uint64_t rest = unit->bytes() - unit->gpu_bytes();
      place_host(*unit, rest > cap ? rest - cap : 0, input.row_group);
      resident += unit->host_bytes();
      slot = std::max(slot, disk_read_bytes(*unit));
    }
    return resident + static_cast<uint64_t>(input.host_slots) * slot;
  };
  std::vector<uint64_t> rests;
  for (TierUnit* unit : all_units) rests.push_back(unit->bytes() - unit->gpu_bytes());
  const auto host_cap = smallest_cap(nth_largest(rests, input.host_slots), *input.host_budget - host_fixed, host_memory);
  if (!host_cap) return std::nullopt;
  host_memory(*host_cap);
  uint64_t host_slot = 0;
  for (TierUnit* unit : all_units) host_slot = std::max(host_slot, disk_read_bytes(*unit));
  if (host_slot > 0)
    attempt.host_costs.push_back({"pinned staging slots for disk reads", static_cast<uint64_t>(input.host_slots) * host_slot});
  return attempt;
}

// Offsets of every streamed and host-resident piece, the disk reads, and the slot sizes.
void lay_out(TierPlan& plan, const TierInput& input) {
  plan.device_slots = input.device_slots;
  plan.host_slots = input.host_slots;
  for (TierUnit& unit : plan.units) {
    uint64_t device = 0;
    std::vector<TierMatrix*> on_disk;
    for (TierMatrix& m : unit.matrices) {
      m.host_offset = plan.host_weight_bytes;
      plan.host_weight_bytes += m.host_bytes();
      m.device_offset = align_up(device, kSlotAlignment);
      device = m.device_offset + m.host_bytes() + m.disk_bytes();
      if (m.disk_bytes() > 0) on_disk.push_back(&m);
    }
    plan.device_slot_bytes = std::max(plan.device_slot_bytes, device);  // every unit prefills on the GPU
    std::sort(on_disk.begin(), on_disk.end(),
              [](const TierMatrix* a, const TierMatrix* b) { return a->tensor->file_offset < b->tensor->file_offset; });
    std::vector<FileRange> ranges;
    for (const TierMatrix* m : on_disk) {
      const uint64_t first = m->tensor->file_offset + m->gpu_bytes() + m->host_bytes();
      ranges.push_back({first, m->tensor->file_offset + m->bytes()});
    }
    std::vector<uint64_t> offsets;
    unit.reads = aligned_reads(ranges, &offsets);
    for (size_t i = 0; i < on_disk.size(); ++i) on_disk[i]->disk_offset = offsets[i];
    uint64_t read = 0;
    for (const ReadSpan& span : unit.reads) read += span.bytes;
    plan.host_slot_bytes = std::max(plan.host_slot_bytes, read);
  }
}

// The CPU's rate on a weight type: its matrix-vector rate, at most the memory's read bandwidth.
double cpu_GBps(const Profile& profile, TensorType type) {
  const double matvec = profile.cpu_matvec_GBps_for(type);
  return matvec > 0 ? std::min(profile.host_read_GBps, matvec) : profile.host_read_GBps;
}

TierSeconds seconds_per_token(const std::vector<TierUnit>& units, const Profile& profile) {
  TierSeconds seconds;
  for (const TierUnit& unit : units) {
    seconds.disk += static_cast<double>(disk_read_bytes(unit)) / (profile.disk_read_GBps * 1e9);
    if (unit.decode == ComputeDevice::Gpu) {
      seconds.pcie += static_cast<double>(upload_bytes(unit)) / (profile.h2d_pinned_GBps * 1e9);
      seconds.gpu += static_cast<double>(unit.bytes()) / (profile.gpu_matvec_GBps * 1e9);
    } else {
      for (const TierMatrix& m : unit.matrices)
        seconds.cpu += static_cast<double>(m.bytes()) / (cpu_GBps(profile, m.tensor->type) * 1e9);
    }
  }
  return seconds;
}

// Reads and uploads overlap compute, but one token's layers run one after another: the CPU's and
// the GPU's compute times add up.
double slowest(const TierSeconds& s) { return std::max({s.disk, s.pcie, s.cpu + s.gpu}); }

}  // namespace

uint64_t TierUnit::bytes() const { return sum(matrices, &TierMatrix::bytes); }
uint64_t TierUnit::gpu_bytes() const { return sum(matrices, &TierMatrix::gpu_bytes); }
uint64_t TierUnit::host_bytes() const { return sum(matrices, &TierMatrix::host_bytes); }
uint64_t TierUnit::disk_bytes() const { return sum(matrices, &TierMatrix::disk_bytes); }

uint64_t TierPlan::gpu_used() const { return sum(gpu_costs, &PlanCost::bytes) + sum(units, &TierUnit::gpu_bytes); }
uint64_t TierPlan::host_used() const { return sum(host_costs, &PlanCost::bytes) + sum(units, &TierUnit::host_bytes); }
uint64_t TierPlan::disk_bytes_per_token() const { return sum(units, &disk_read_bytes); }
uint64_t TierPlan::upload_bytes_per_token() const {
  uint64_t bytes = 0;
  for (const TierUnit& unit : units)
    if (unit.decode == ComputeDevice::Gpu) bytes += upload_bytes(unit);
  return bytes;
}
uint64_t TierPlan::cpu_bytes_per_token() const {
  uint64_t bytes = 0;
  for (const TierUnit& unit : units)
    if (unit.decode == ComputeDevice::Cpu) bytes += unit.bytes();
  return bytes;
}
uint64_t TierPlan::gpu_bytes_per_token() const { return sum(units, &TierUnit::bytes) - cpu_bytes_per_token(); }
int TierPlan::cpu_layers() const {
  return static_cast<int>(std::count_if(units.begin(), units.end(),
                                        [](const TierUnit& unit) { return unit.decode == ComputeDevice::Cpu; }));
}

TierPlan make_tier_plan(const TierInput& input, const Profile& profile) {
  if (!profile.has_gpu())
    fail("the profile has no GPU measurements (h2d_pinned_GBps, vram_read_GBps, gpu_matvec_GBps): run 'flexinfer "
         "probe' on the machine with the GPU, or pass --profile FILE");
  if (!(profile.disk_read_GBps > 0 && profile.host_read_GBps > 0))
    fail("the profile has no disk or memory bandwidth: run 'flexinfer probe', or pass --profile FILE");
  if (input.units.size() < 2) fail("internal: a tier plan needs at least one layer and the output head");
  if (input.row_group < 1 || input.device_slots < 1 || input.host_slots < 2) fail("internal: bad tier plan input");

  std::vector<TierUnit> blank;
  for (size_t i = 0; i < input.units.size(); ++i) {
    TierUnit unit;
    unit.name = input.units[i].name;
    unit.kv_bytes = i + 1 < input.units.size() ? input.kv_bytes_per_layer : 0;
    for (const TensorInfo* tensor : input.units[i].matrices) {
      if (tensor->rows() == 0 || tensor->bytes % tensor->rows() != 0)
        fail("internal: tensor '%s' has no whole rows", tensor->name.c_str());
      unit.matrices.push_back({tensor, tensor->rows(), tensor->bytes / tensor->rows(), 0, 0});
    }
    blank.push_back(std::move(unit));
  }

  // Every size of the CPU-decoded block, fastest first; ties go to fewer CPU layers.
  std::optional<TierPlan> best;
  const size_t layers = blank.size() - 1;
  for (size_t cpu_layers = 0; cpu_layers <= (input.allow_cpu_decode ? layers : 0); ++cpu_layers) {
    std::optional<Attempt> attempt = place(input, blank, cpu_layers);
    if (!attempt) continue;
    const TierSeconds seconds = seconds_per_token(attempt->units, profile);
    if (best && slowest(seconds) >= slowest(best->seconds)) continue;
    TierPlan plan;
    plan.gpu_budget = input.gpu_budget;
    plan.host_budget = input.host_budget;
    plan.gpu_costs = std::move(attempt->gpu_costs);
    plan.host_costs = std::move(attempt->host_costs);
    plan.units = std::move(attempt->units);
    plan.seconds = seconds;
    best = std::move(plan);
  }
  if (!best) {
    // The least each budget needs: everything streamed through two slots of the largest unit.
    std::vector<uint64_t> sizes, slot_sizes;
    for (const TierUnit& unit : blank) {
      sizes.push_back(unit.bytes());
      slot_sizes.push_back(slot_bytes(unit, true));
    }
    const uint64_t largest = nth_largest(sizes, 1);
    const uint64_t gpu_minimum =
        sum(input.gpu_fixed, &PlanCost::bytes) + static_cast<uint64_t>(input.device_slots) * nth_largest(slot_sizes, 1);
    const uint64_t host_minimum = sum(input.host_fixed, &PlanCost::bytes) + static_cast<uint64_t>(input.host_slots) * largest;
    fail("no placement fits --gpu-mem %s and --host-mem %s: the GPU needs at least %s (fixed costs and %d staging "
         "slots) plus the KV cache of the layers it decodes, host memory at least %s plus the KV cache of the layers "
         "the CPU decodes",
         format_bytes(input.gpu_budget).c_str(), input.host_budget ? format_bytes(*input.host_budget).c_str() : "unlimited",
         format_bytes(gpu_minimum).c_str(), input.device_slots, format_bytes(host_minimum).c_str());
  }
  lay_out(*best, input);
  const TierSeconds& s = best->seconds;
  const double seconds = slowest(s);
  best->predicted_decode_tok_s = seconds > 0 ? 1.0 / seconds : 0.0;
  best->bound = seconds == s.disk ? "disk" : seconds == s.pcie ? "pcie" : s.cpu >= s.gpu ? "cpu" : "gpu";
  return *best;
}

}  // namespace fi
