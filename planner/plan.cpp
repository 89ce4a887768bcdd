#include "planner/plan.h"

#include <algorithm>
#include <functional>
#include <numeric>

#include "io/direct_file.h"
#include "io/error.h"
#include "planner/budget.h"

namespace fi {

uint64_t PlanMatrix::resident_span_bytes() const {
  if (resident_rows == 0) return 0;
  return align_up(tensor->file_offset + resident_bytes(), kDirectAlignment) - align_down(tensor->file_offset, kDirectAlignment);
}

namespace {

template <typename Item, typename Field>
uint64_t sum(const std::vector<Item>& items, Field field) {
  return std::accumulate(items.begin(), items.end(), uint64_t{0},
                         [&](uint64_t total, const Item& item) { return total + std::invoke(field, item); });
}

uint64_t span_bytes(const TensorInfo& tensor) {
  return align_up(tensor.file_offset + tensor.bytes, kDirectAlignment) - align_down(tensor.file_offset, kDirectAlignment);
}

// Keeps about `resident_target` bytes of the unit in memory (preservation order, row groups) and
// lays its streamed rows out in a staging slot.
void place(PlanUnit& unit, uint64_t resident_target, uint64_t row_group) {
  uint64_t remaining = resident_target;
  for (PlanMatrix& m : unit.matrices) {
    if (remaining >= m.bytes()) {
      m.resident_rows = m.rows;
      remaining -= m.bytes();
    } else {
      const uint64_t group_bytes = row_group * m.row_bytes;
      m.resident_rows = std::min(m.rows, remaining / group_bytes * row_group);
      remaining = 0;
    }
  }
  // Streamed pieces in file order; pieces whose aligned spans touch share one read.
  std::vector<PlanMatrix*> streamed;
  for (PlanMatrix& m : unit.matrices)
    if (m.streamed_bytes() > 0) streamed.push_back(&m);
  std::sort(streamed.begin(), streamed.end(),
            [](const PlanMatrix* a, const PlanMatrix* b) { return a->tensor->file_offset < b->tensor->file_offset; });
  std::vector<FileRange> ranges;
  for (const PlanMatrix* m : streamed)
    ranges.push_back({m->tensor->file_offset + m->resident_bytes(), m->tensor->file_offset + m->bytes()});
  std::vector<uint64_t> offsets;
  unit.reads = aligned_reads(ranges, &offsets);
  for (size_t i = 0; i < streamed.size(); ++i) streamed[i]->slot_offset = offsets[i];
}

struct Candidate {
  std::vector<PlanUnit> units;
  uint64_t resident = 0;  // memory of resident rows
  uint64_t slot = 0;
  uint64_t memory(int depth) const { return resident + static_cast<uint64_t>(depth) * slot; }
};

// Every unit streams at most `streamed_cap` bytes (balanced locking).
Candidate evaluate(const std::vector<PlanUnit>& units, uint64_t streamed_cap, uint64_t row_group) {
  Candidate candidate{units, 0, 0};
  for (PlanUnit& unit : candidate.units) {
    const uint64_t total = unit.bytes();
    place(unit, total > streamed_cap ? total - streamed_cap : 0, row_group);
    candidate.resident += unit.resident_span_bytes();
    candidate.slot = std::max(candidate.slot, unit.read_bytes());
  }
  return candidate;
}

}  // namespace

std::vector<ReadSpan> aligned_reads(const std::vector<FileRange>& ranges, std::vector<uint64_t>* slot_offsets) {
  std::vector<ReadSpan> reads;
  slot_offsets->clear();
  uint64_t slot = 0;
  for (const FileRange& range : ranges) {
    const uint64_t aligned_begin = align_down(range.begin, kDirectAlignment), aligned_end = align_up(range.end, kDirectAlignment);
    if (!reads.empty() && aligned_begin <= reads.back().file_offset + reads.back().bytes) {
      ReadSpan& last = reads.back();
      const uint64_t last_end = std::max(last.file_offset + last.bytes, aligned_end);
      slot += last_end - (last.file_offset + last.bytes);
      last.bytes = last_end - last.file_offset;
      slot_offsets->push_back(last.slot_offset + (range.begin - last.file_offset));
    } else {
      reads.push_back({aligned_begin, aligned_end - aligned_begin, slot});
      slot_offsets->push_back(slot + (range.begin - aligned_begin));
      slot += aligned_end - aligned_begin;
    }
  }
  return reads;
}

uint64_t PlanUnit::bytes() const { return sum(matrices, &PlanMatrix::bytes); }
uint64_t PlanUnit::resident_bytes() const { return sum(matrices, &PlanMatrix::resident_bytes); }
uint64_t PlanUnit::resident_span_bytes() const { return sum(matrices, &PlanMatrix::resident_span_bytes); }
uint64_t PlanUnit::streamed_bytes() const { return sum(matrices, &PlanMatrix::streamed_bytes); }
uint64_t PlanUnit::read_bytes() const { return sum(reads, &ReadSpan::bytes); }

uint64_t Plan::fixed_bytes() const { return sum(fixed, &PlanCost::bytes); }
uint64_t Plan::weight_bytes() const {
  return sum(units, &PlanUnit::bytes) + (caches_experts() ? expert_cache.experts.total_bytes() : 0);
}
uint64_t Plan::resident_bytes() const { return sum(units, &PlanUnit::resident_bytes); }
uint64_t Plan::resident_span_bytes() const { return sum(units, &PlanUnit::resident_span_bytes); }
uint64_t Plan::streamed_bytes_per_token() const { return sum(units, &PlanUnit::streamed_bytes); }
uint64_t Plan::read_bytes_per_token() const { return sum(units, &PlanUnit::read_bytes); }

namespace {

std::vector<PlanUnit> plan_units(const PlanInput& input, bool without_experts) {
  std::vector<const TensorInfo*> expert_tensors;
  if (without_experts)
    for (const auto& layer : input.experts.layers) expert_tensors.insert(expert_tensors.end(), layer.begin(), layer.end());
  std::vector<PlanUnit> units;
  for (const PlanInput::Unit& request : input.units) {
    PlanUnit unit{request.name, {}, {}};
    for (const TensorInfo* tensor : request.matrices) {
      if (std::find(expert_tensors.begin(), expert_tensors.end(), tensor) != expert_tensors.end()) continue;
      if (tensor->rows() == 0 || tensor->bytes % tensor->rows() != 0)
        fail("internal: tensor '%s' has no whole rows", tensor->name.c_str());
      unit.matrices.push_back({tensor, tensor->rows(), tensor->bytes / tensor->rows(), 0, 0});
    }
    units.push_back(std::move(unit));
  }
  return units;
}

// Units placed within `available` bytes: everything resident when it fits, else balanced streaming
// at the deepest staging that fits; none when even the minimum does not.
struct UnitFit {
  std::vector<PlanUnit> units;
  int depth = 0;
  uint64_t slot = 0;
  uint64_t memory = 0;
};

class UnitPlacer {
 public:
  UnitPlacer(std::vector<PlanUnit> units, uint64_t row_group)
      : units_(std::move(units)), row_group_(row_group), everything_(evaluate(units_, 0, row_group)) {
    for (const PlanUnit& unit : units_) totals_.push_back(unit.bytes());
    std::sort(totals_.rbegin(), totals_.rend());
  }
  uint64_t everything_memory() const { return everything_.memory(0); }
  // The fewest bytes held for a given depth: the streamed cap at the depth-th largest unit (a
  // larger cap grows every slot by more than it frees).
  std::pair<uint64_t, Candidate> tightest(int depth) const {
    const uint64_t cap = totals_.empty() ? 0 : totals_[std::min<size_t>(static_cast<size_t>(depth) - 1, totals_.size() - 1)];
    return {cap, evaluate(units_, cap, row_group_)};
  }
  uint64_t minimum_memory() const { return std::min(everything_memory(), tightest(2).second.memory(2)); }

  std::optional<UnitFit> fit(uint64_t available, int max_depth) const {
    if (everything_.memory(0) <= available) return UnitFit{everything_.units, 0, 0, everything_.memory(0)};
    for (int depth = max_depth; depth >= 2; --depth) {
      auto [high, best] = tightest(depth);
      if (best.memory(depth) > available) continue;
      // The smallest cap that fits: memory held falls as the cap rises up to `high`.
      uint64_t low = 0;  // infeasible: everything resident did not fit
      while (high - low > 1) {
        const uint64_t middle = low + (high - low) / 2;
        Candidate candidate = evaluate(units_, middle, row_group_);
        if (candidate.memory(depth) <= available) {
          high = middle;
          best = std::move(candidate);
        } else {
          low = middle;
        }
      }
      const uint64_t memory = best.memory(depth);
      return UnitFit{std::move(best.units), depth, best.slot, memory};
    }
    return std::nullopt;
  }

 private:
  std::vector<PlanUnit> units_;
  uint64_t row_group_;
  Candidate everything_;
  std::vector<uint64_t> totals_;
};

}  // namespace

std::vector<FileRange> PlanExperts::ranges(int64_t layer, int64_t expert) const {
  std::vector<FileRange> result;
  for (const TensorInfo* tensor : layers.at(static_cast<size_t>(layer))) {
    const uint64_t slice = tensor->bytes / static_cast<uint64_t>(count);
    const uint64_t begin = tensor->file_offset + static_cast<uint64_t>(expert) * slice;
    result.push_back({begin, begin + slice});
  }
  return result;
}

uint64_t PlanExperts::slot_bytes() const {
  uint64_t largest = 0;
  for (const auto& layer : layers) {
    uint64_t bytes = 0;
    // An aligned span covers a slice and at most one partial page at each end.
    for (const TensorInfo* tensor : layer) bytes += align_up(tensor->bytes / static_cast<uint64_t>(count), kDirectAlignment) + kDirectAlignment;
    largest = std::max(largest, bytes);
  }
  return largest;
}

uint64_t PlanExperts::total_bytes() const {
  uint64_t bytes = 0;
  for (const auto& layer : layers)
    for (const TensorInfo* tensor : layer) bytes += tensor->bytes;
  return bytes;
}

uint64_t ExpertCachePlan::used_bytes_per_token() const {
  if (experts.empty()) return 0;
  return experts.total_bytes() / static_cast<uint64_t>(experts.count) * static_cast<uint64_t>(experts.used);
}

uint64_t ExpertCachePlan::uniform_read_bytes_per_token() const {
  const auto all = static_cast<double>(experts.layers.size()) * static_cast<double>(experts.count);
  if (experts.empty() || static_cast<double>(slots) >= all) return 0;
  return static_cast<uint64_t>(static_cast<double>(used_bytes_per_token()) * (1.0 - static_cast<double>(slots) / all));
}

Plan make_plan(const PlanInput& input) {
  if (input.max_depth < 2) fail("internal: prefetch depth must be at least 2");
  if (input.row_group < 1) fail("internal: row group must be at least 1");
  Plan plan;
  plan.host_budget = input.host_budget;
  plan.fixed = input.fixed;
  plan.always_resident = input.always_resident;
  uint64_t small_tensors = 0;
  for (const TensorInfo* tensor : input.always_resident) small_tensors += span_bytes(*tensor);
  plan.fixed.push_back({"norms and other small tensors", small_tensors});
  const uint64_t budgeted_fixed = plan.fixed_bytes();
  if (!input.host_budget && !input.resident_without_budget.empty()) {
    uint64_t loaded = 0;
    for (const TensorInfo* tensor : input.resident_without_budget) {
      plan.always_resident.push_back(tensor);
      loaded += span_bytes(*tensor);
    }
    plan.fixed.push_back({"token embedding", loaded});
  }

  const uint64_t fixed = plan.fixed_bytes();
  const UnitPlacer whole(plan_units(input, false), input.row_group);
  const bool experts = !input.experts.empty();
  // With experts cached: the dense parts at their minimum beside the fewest expert slots.
  std::optional<UnitPlacer> dense;
  uint64_t expert_slot = 0;
  int64_t minimum_slots = 0;
  if (experts) {
    dense.emplace(plan_units(input, true), input.row_group);
    expert_slot = input.experts.slot_bytes();
    minimum_slots = minimum_expert_slots(input.experts);
  }
  const uint64_t minimum_weights = experts ? std::min(whole.minimum_memory(), dense->minimum_memory() + static_cast<uint64_t>(minimum_slots) * expert_slot)
                                           : whole.minimum_memory();
  plan.minimum_host_bytes = budgeted_fixed + minimum_weights;
  // The smallest budget whose allowance for the kernel leaves that much.
  if (input.kernel_allowance) plan.minimum_host_bytes += kernel_allowance(plan.minimum_host_bytes);
  // The kernel's share of what the plan holds, listed with the fixed costs.
  auto add_kernel = [&](uint64_t held) {
    if (!input.host_budget || !input.kernel_allowance) return;
    plan.kernel_bytes = kernel_allowance(held);
    plan.fixed.push_back({"kernel (page tables, I/O registrations)", plan.kernel_bytes});
  };
  // Memory for the plan itself when `budget` also holds the kernel's share of it.
  auto without_kernel = [&](uint64_t budget) {
    if (!input.kernel_allowance) return budget;
    uint64_t held = budget - budget / 256;
    while (held + kernel_allowance(held) > budget) --held;
    return held;
  };

  if (!input.host_budget || fixed + whole.everything_memory() <= without_kernel(*input.host_budget)) {
    plan.units = whole.fit(UINT64_MAX, input.max_depth)->units;
    add_kernel(fixed + whole.everything_memory());
    return plan;
  }
  const uint64_t budget = *input.host_budget;
  if (budget < plan.minimum_host_bytes) {
    std::string costs;
    for (const PlanCost& cost : plan.fixed) costs += ", " + cost.what + " " + format_bytes(cost.bytes);
    const std::string working_set =
        experts ? strprintf("%lld expert slots", static_cast<long long>(minimum_slots)) : std::string("staging for 2 layers");
    fail("a host memory budget of %s is below this model's minimum of %s (%s%s)%s", format_bytes(budget).c_str(),
         format_bytes(plan.minimum_host_bytes).c_str(), working_set.c_str(), costs.c_str(), input.minimum_hint.c_str());
  }
  const uint64_t available = without_kernel(budget) - fixed;
  const uint64_t least_slots = static_cast<uint64_t>(minimum_slots) * expert_slot;
  if (experts && dense->minimum_memory() + least_slots <= available) {
    // Dense parts first (resident if they fit beside the fewest slots); experts fill what remains.
    std::optional<UnitFit> fit = dense->fit(available - least_slots, input.max_depth);
    if (!fit) fail("internal: no plan found for a host budget of %s", format_bytes(budget).c_str());
    const int64_t all_experts = static_cast<int64_t>(input.experts.layers.size()) * input.experts.count;
    plan.expert_cache = {input.experts, std::min(all_experts, static_cast<int64_t>((available - fit->memory) / expert_slot)),
                         expert_slot};
    plan.units = std::move(fit->units);
    plan.depth = fit->depth;
    plan.slot_bytes = fit->slot;
    add_kernel(fixed + fit->memory + plan.expert_cache.bytes());
    return plan;
  }
  std::optional<UnitFit> fit = whole.fit(available, input.max_depth);
  if (!fit) fail("internal: no plan found for a host budget of %s", format_bytes(budget).c_str());
  plan.units = std::move(fit->units);
  plan.depth = fit->depth;
  plan.slot_bytes = fit->slot;
  add_kernel(fixed + fit->memory);
  return plan;
}

}  // namespace fi
