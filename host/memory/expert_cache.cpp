#include "host/memory/expert_cache.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <numeric>
#include <random>
#include <utility>

#include "host/kernels/repack.h"
#include "host/memory/weights.h"
#include "io/error.h"

namespace fi {

std::optional<ExpertPolicy> parse_expert_policy(const std::string& name) {
  if (name == "recency") return ExpertPolicy::Recency;
  if (name == "frequency") return ExpertPolicy::Frequency;
  return std::nullopt;
}

const char* expert_policy_name(ExpertPolicy policy) { return policy == ExpertPolicy::Recency ? "recency" : "frequency"; }

ReaderOptions expert_reader_options(const ExpertCachePlan& plan, ReaderOptions io) {
  // Every expert decode may have in flight gets its requests into the kernel: requests held back
  // until the computing thread next calls the reader leave the disk idle, and this disk's
  // throughput grows with the bytes in flight (latency-bound).
  const uint64_t request = std::max<uint64_t>(io.request_bytes, kDirectAlignment);  // AsyncReader::open checks it
  // An expert is one read per tensor, each split into requests on its own; its aligned span
  // covers its slice and at most a partial page at each end.
  uint64_t per_expert = 0;
  for (size_t l = 0; l < plan.experts.layers.size(); ++l) {
    uint64_t requests = 0;
    for (const FileRange& range : plan.experts.ranges(static_cast<int64_t>(l), 0))
      requests += (range.end - range.begin + 2 * kDirectAlignment + request - 1) / request;
    per_expert = std::max(per_expert, requests);
  }
  const uint64_t wanted = static_cast<uint64_t>(experts_in_flight(plan.experts.used)) * per_expert;
  const auto at_least = static_cast<uint64_t>(std::clamp(io.queue_depth, 1, kMaxQueueDepth));
  io.queue_depth = static_cast<int>(std::clamp<uint64_t>(wanted, at_least, kMaxQueueDepth));
  return io;
}

ExpertCache::ExpertCache(const std::string& path, const ExpertCachePlan& plan, HostArena& arena, ThreadPool& pool,
                         const ReaderOptions& io, const ExpertCacheOptions& options)
    : plan_(plan), pool_(pool), options_(options) {
  if (plan.slots <= 0 || plan.experts.empty()) fail("internal: an expert cache without slots");
  reader_ = AsyncReader::open(path, expert_reader_options(plan, io));
  uint8_t* memory = arena.allocate(plan.bytes(), kDirectAlignment, "expert cache");
  reader_->register_memory({memory, static_cast<size_t>(plan.bytes())});
  slots_.resize(static_cast<size_t>(plan.slots));
  for (size_t s = 0; s < slots_.size(); ++s) slots_[s].memory = memory + s * plan.slot_bytes;
  const size_t keys = plan.experts.layers.size() * static_cast<size_t>(plan.experts.count);
  slot_of_.assign(keys, -1);
  frequency_.assign(keys, 0);
}

int64_t ExpertCache::victim() const {
  int64_t best = -1;
  for (size_t s = 0; s < slots_.size(); ++s) {
    const Slot& slot = slots_[s];
    if (slot.pinned) continue;
    if (slot.key < 0) return static_cast<int64_t>(s);
    if (best < 0) {
      best = static_cast<int64_t>(s);
      continue;
    }
    const Slot& current = slots_[static_cast<size_t>(best)];
    const bool older = slot.last_use < current.last_use;
    if (options_.policy == ExpertPolicy::Recency) {
      if (older) best = static_cast<int64_t>(s);
      continue;
    }
    const uint32_t f = frequency_[static_cast<size_t>(slot.key)], g = frequency_[static_cast<size_t>(current.key)];
    if (f < g || (f == g && older)) best = static_cast<int64_t>(s);
  }
  return best;
}

std::vector<ReadSpan> ExpertCache::expert_reads(int64_t layer, int32_t expert, std::vector<size_t>* order,
                                                std::vector<uint64_t>* offsets) const {
  // Slices in file order for the aligned reads; their places in the slot in tensor order.
  const std::vector<FileRange> ranges = plan_.experts.ranges(layer, expert);
  order->resize(ranges.size());
  std::iota(order->begin(), order->end(), size_t{0});
  std::sort(order->begin(), order->end(), [&](size_t a, size_t b) { return ranges[a].begin < ranges[b].begin; });
  std::vector<FileRange> in_file_order;
  for (size_t i : *order) in_file_order.push_back(ranges[i]);
  return aligned_reads(in_file_order, offsets);
}

double ExpertCache::read_only_GBps(uint64_t bytes, int in_flight, uint64_t seed) {
  // Reads still in flight (a last token's predictions) land first, as they would have.
  while (reader_->outstanding() > 0) wait_for_read(true);
  const size_t slots = std::min(slots_.size(), static_cast<size_t>(std::max(in_flight, 1)));
  for (size_t s = 0; s < slots; ++s) {
    Slot& slot = slots_[s];
    if (slot.key >= 0) slot_of_[static_cast<size_t>(slot.key)] = -1;
    std::erase(ahead_, static_cast<int64_t>(s));
    slot = Slot{.memory = slot.memory};
  }
  std::mt19937_64 rng(bytes + seed);
  std::uniform_int_distribution<int64_t> pick(0, static_cast<int64_t>(plan_.experts.layers.size()) * plan_.experts.count - 1);
  std::vector<int> reads_left(slots, 0);
  uint64_t submitted = 0;
  std::vector<size_t> order;
  std::vector<uint64_t> offsets;
  auto read_into = [&](size_t s) {
    const int64_t k = pick(rng);
    const std::vector<ReadSpan> reads =
        expert_reads(k / plan_.experts.count, static_cast<int32_t>(k % plan_.experts.count), &order, &offsets);
    reads_left[s] = static_cast<int>(reads.size());
    for (const ReadSpan& read : reads) {
      reader_->submit({slots_[s].memory + read.slot_offset, read.file_offset, read.bytes, static_cast<uint64_t>(s)});
      submitted += read.bytes;
    }
  };
  auto read = [&](uint64_t sample) {
    submitted = 0;
    for (size_t s = 0; s < slots; ++s) read_into(s);
    while (reader_->outstanding() > 0) {
      const auto s = static_cast<size_t>(reader_->wait());
      if (--reads_left[s] == 0 && submitted < sample) read_into(s);
    }
  };
  try {
    // A quarter as much first, unmeasured: the disk's first reads after a pause came slower here.
    read(bytes / 4);
    const auto start = std::chrono::steady_clock::now();
    read(bytes);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return static_cast<double>(submitted) / seconds / 1e9;
  } catch (...) {
    reader_->abandon();
    throw;
  }
}

bool ExpertCache::start_read(int64_t layer, int32_t expert) {
  const int64_t s = victim();
  if (s < 0) return false;
  Slot& slot = slots_[static_cast<size_t>(s)];
  if (slot.key >= 0) slot_of_[static_cast<size_t>(slot.key)] = -1;
  slot.key = -1;

  std::vector<size_t> order;
  std::vector<uint64_t> offsets;
  const std::vector<ReadSpan> reads = expert_reads(layer, expert, &order, &offsets);
  const auto& tensors = plan_.experts.layers[static_cast<size_t>(layer)];
  WeightMatrix* views[3] = {&slot.weights.gate, &slot.weights.up, &slot.weights.down};
  if (tensors.size() != 3) fail("internal: a layer of experts without gate, up and down tensors");
  for (size_t i = 0; i < order.size(); ++i) {
    const size_t t = order[i];
    WeightMatrix view = matrix_shape(*tensors[t]);
    view.rows /= plan_.experts.count;
    view.data = slot.memory + offsets[i];
    // Computed as read or interleaved, as its uses come: with the bits of its resident layout.
    view.as_interleaved = can_interleave(view);
    *views[t] = view;
  }
  uint64_t bytes = 0;
  for (const ReadSpan& read : reads) {
    if (read.slot_offset + read.bytes > plan_.slot_bytes) fail("internal: an expert's reads overflow its slot");
    bytes += read.bytes;
  }
  // Linked, with its reads counted, before the first is submitted: a submission that fails leaves
  // a slot the failure path empties, never one that looks cached.
  slot.key = key(layer, expert);
  slot_of_[static_cast<size_t>(slot.key)] = s;
  slot.pinned = true;
  slot.speculative = false;
  slot.read_ahead = false;
  slot.held = false;
  slot.computed = false;
  slot.last_use = 0;
  slot.read_bytes = bytes;
  slot.reads_left = static_cast<int>(reads.size());
  slot.submitted = Trace::Clock::now();
  for (const ReadSpan& read : reads)
    reader_->submit({slot.memory + read.slot_offset, read.file_offset, read.bytes, static_cast<uint64_t>(s)});
  stats_.bytes_read += bytes;
  ++stats_.experts_read;
  return true;
}

void ExpertCache::interleave(Slot& slot) {
  for (WeightMatrix* view : {&slot.weights.gate, &slot.weights.up, &slot.weights.down})
    if (can_interleave(*view)) {
      interleave_rows(pool_, view->type, view->cols, view->rows, const_cast<uint8_t*>(view->data));
      view->interleaved = true;
    }
}

void ExpertCache::arrived(Slot& slot, bool decode) {
  // In decode an expert stays as read until it is used again: re-arranging it costs more than
  // computing it as read for a few tokens, and matmul gives plain rows the interleaved bits
  // (results do not depend on where an expert lives or how it is laid out). A prompt's tokens
  // compute far faster interleaved (128-token prefill ran at 0.56x row by row).
  if (!decode) interleave(slot);
  if (trace_)
    trace_->add(Trace::Track::Disk,
                strprintf("read expert %lld.%lld%s", static_cast<long long>(slot.key / plan_.experts.count),
                          static_cast<long long>(slot.key % plan_.experts.count), slot.read_ahead ? " (speculative)" : ""),
                slot.submitted, Trace::Clock::now());
}

void ExpertCache::note_use(Slot& slot) {
  slot.last_use = clock_;
  slot.pinned = false;
  slot.computed = true;
}

ExpertCache::Slot* ExpertCache::wait_for_read(bool decode) {
  const auto start = Trace::Clock::now();
  const uint64_t tag = reader_->wait();
  stats_.wait_seconds += std::chrono::duration<double>(Trace::Clock::now() - start).count();
  Slot& slot = slots_[static_cast<size_t>(tag)];
  if (--slot.reads_left > 0) return nullptr;
  arrived(slot, decode);
  return &slot;
}

void ReadAheadTrial::layer_passed(double seconds) {
  if (uncounted_layers_ > 0) {
    --uncounted_layers_;
    return;
  }
  const int setting = reading_ahead_ ? 1 : 0;
  // A layer slowed by something else (a preempted thread) counts as at most a few ordinary ones.
  if (samples_[setting] >= kBlockLayers) seconds = std::min(seconds, kOutlier * mean_[setting]);
  ++samples_[setting];
  mean_[setting] += (seconds - mean_[setting]) / static_cast<double>(std::min(samples_[setting], kWindowLayers));
  block_seconds_ += seconds;
  if (++in_block_ < kBlockLayers) return;
  in_block_ = 0;
  block_passed(std::exchange(block_seconds_, 0.0));
}

void ReadAheadTrial::block_passed(double block_seconds) {
  ++blocks_;
  if (blocks_ < kTrialBlocks) {
    reading_ahead_ = blocks_ % 4 == 0 || blocks_ % 4 == 3;
    return;
  }
  if (blocks_ == kTrialBlocks) {  // each setting's average is over its trial blocks alone
    preferred_ = reading_ahead_ = mean_[1] <= mean_[0];
    return;
  }
  if (reading_ahead_ != preferred_) {
    explored_ = block_seconds;
    reading_ahead_ = preferred_;
    return;
  }
  if (explored_) {
    explorations_[explorations_held_++ % kJudgedExplorations] = {*explored_, (preferred_before_ + block_seconds) / 2};
    double explored = 0, around = 0;
    for (size_t i = 0; i < std::min(explorations_held_, kJudgedExplorations); ++i) {
      explored += explorations_[i].explored;
      around += explorations_[i].around;
    }
    if (explored < around) {
      preferred_ = !preferred_;
      explorations_held_ = 0;
    }
    explored_.reset();
  }
  preferred_before_ = block_seconds;
  reading_ahead_ = blocks_ % kExploreEvery == 0 ? !preferred_ : preferred_;
}

ExpertCache::~ExpertCache() {
  // Speculative reads may still be in flight: their buffers must outlive them.
  if (reader_) reader_->abandon();
}

void ExpertCache::expect(int64_t layer, std::span<const int32_t> experts) {
  if (!options_.speculate) return;
  expected_layer_ = layer;
  expected_.assign(experts.begin(), experts.end());
}

void ExpertCache::use(int64_t layer, std::span<const int32_t> experts, bool predictable, const ExpertUse& use) {
  ++clock_;
  const auto now = Trace::Clock::now();
  // Consecutive layers of predictable batches only (not across the head and the next token's
  // start, nor an idle server's pause): a prompt's long layers say nothing of decode's.
  if (predictable && last_layer_ >= 0 && layer == last_layer_ + 1 && measures_read_ahead())
    trial_.layer_passed(std::chrono::duration<double>(now - last_use_).count());
  last_use_ = now;
  last_layer_ = predictable ? layer : -1;
  if (predictable && measures_read_ahead() && !trial_.reading_ahead()) ++stats_.layers_not_read_ahead;
  std::vector<int32_t> cached;
  std::deque<int32_t> to_read;
  for (int32_t expert : experts) {
    const auto k = static_cast<size_t>(key(layer, expert));
    ++stats_.uses;
    ++frequency_[k];
    // Counts halve every few passes over all experts: the choices of long ago weigh less.
    if (++uses_since_aging_ >= 4 * frequency_.size()) {
      for (uint32_t& f : frequency_) f /= 2;
      uses_since_aging_ = 0;
    }
    const int64_t s = slot_of_[k];
    if (s < 0) {
      to_read.push_back(expert);
      continue;
    }
    Slot& slot = slots_[static_cast<size_t>(s)];
    if (slot.speculative) {
      ++stats_.speculative_used;
      score(true);
      slot.speculative = false;
    }
    slot.pinned = true;
    // One whose speculative read is still in flight is computed when it arrives, below.
    if (slot.reads_left == 0) {
      ++stats_.hits;
      cached.push_back(expert);
    }
  }
  // This layer's predictions are judged: those it did not choose are no longer protected.
  std::erase_if(ahead_, [&](int64_t s) {
    Slot& slot = slots_[static_cast<size_t>(s)];
    if (slot.held) {  // cached when predicted
      if (slot.key / plan_.experts.count != layer) return false;
      slot.held = false;
      const auto expert = static_cast<int32_t>(slot.key % plan_.experts.count);
      if (std::find(experts.begin(), experts.end(), expert) == experts.end()) slot.pinned = false;
      return true;
    }
    if (!slot.speculative) return true;  // read ahead and chosen above
    if (slot.key / plan_.experts.count != layer) return false;
    score(false);
    stats_.speculative_bytes_wasted += slot.read_bytes;
    slot.speculative = false;
    if (slot.reads_left == 0) slot.pinned = false;
    return true;
  });
  if (unread_layer_ == layer)
    for (int32_t expert : unread_) score(std::find(experts.begin(), experts.end(), expert) != experts.end());
  unread_layer_ = -1;
  unread_.clear();
  auto issue = [&] {
    while (!to_read.empty() && start_read(layer, to_read.front())) to_read.pop_front();
  };
  // The prediction's reads queue behind this layer's own, and only while slots are free to take.
  auto speculate = [&] {
    const bool paused = precision_ < kMinimumPrecision;
    if (expected_layer_ >= 0 && to_read.empty() && !paused)
      // The predicted experts already cached stay so while the others are read into other slots.
      for (int32_t expert : expected_) {
        const int64_t s = slot_of_[static_cast<size_t>(key(expected_layer_, expert))];
        if (s < 0) continue;
        Slot& slot = slots_[static_cast<size_t>(s)];
        if (slot.pinned) continue;  // in use, being read, or already protected
        slot.pinned = slot.held = true;
        ahead_.push_back(s);
      }
    if (expected_layer_ >= 0 && to_read.empty())
      for (int32_t expert : expected_) {
        if (slot_of_[static_cast<size_t>(key(expected_layer_, expert))] >= 0) continue;
        if (paused) {
          ++stats_.speculation_paused;
          unread_layer_ = expected_layer_;
          unread_.push_back(expert);
          continue;
        }
        if (!start_read(expected_layer_, expert)) break;
        Slot& slot = slots_[static_cast<size_t>(slot_of_[static_cast<size_t>(key(expected_layer_, expert))])];
        slot.speculative = slot.read_ahead = true;
        ahead_.push_back(slot_of_[static_cast<size_t>(key(expected_layer_, expert))]);
        ++stats_.speculative_reads;
      }
    expected_layer_ = -1;
    expected_.clear();
  };
  size_t remaining = experts.size();
  try {
    issue();
    speculate();
    // The disk works on the misses while the cached experts compute, all in one go; one at a time
    // while misses wait for slots, so that each computed expert's slot can take the next read.
    std::vector<ReadyExpert> ready;
    ready.reserve(cached.size());
    for (int32_t expert : cached) {
      Slot& slot = slots_[static_cast<size_t>(slot_of_[static_cast<size_t>(key(layer, expert))])];
      if (slot.computed || !predictable) interleave(slot);
      ready.push_back({expert, &slot.weights});
    }
    for (size_t first = 0; first < cached.size();) {
      const size_t count = to_read.empty() ? cached.size() - first : 1;
      use(std::span<const ReadyExpert>(ready).subspan(first, count));
      for (size_t i = first; i < first + count; ++i)
        note_use(slots_[static_cast<size_t>(slot_of_[static_cast<size_t>(key(layer, cached[i]))])]);
      remaining -= count;
      first += count;
      issue();
    }
    while (remaining > 0) {
      if (reader_->outstanding() == 0) fail("internal: no expert slot free to read into");
      Slot* slot = wait_for_read(predictable);
      if (!slot) continue;
      const auto expert = static_cast<int32_t>(slot->key % plan_.experts.count);
      if (slot->key / plan_.experts.count == layer && std::find(experts.begin(), experts.end(), expert) != experts.end()) {
        const ReadyExpert ready{expert, &slot->weights};
        use(std::span<const ReadyExpert>(&ready, 1));
        note_use(*slot);
        --remaining;
      } else if (!slot->speculative) {
        slot->pinned = false;  // a wrong prediction's read: cached, first to go
      }
      // A prediction for a later layer stays pinned until that layer has chosen.
      issue();
    }
  } catch (...) {
    // A failed read or product: slots whose reads did not complete are emptied, none stays pinned.
    reader_->abandon();
    for (Slot& slot : slots_) {
      if (slot.reads_left > 0 && slot.key >= 0) {
        slot_of_[static_cast<size_t>(slot.key)] = -1;
        slot.key = -1;
      }
      slot.reads_left = 0;
      slot.pinned = false;
      slot.speculative = false;
      slot.held = false;
    }
    expected_layer_ = -1;
    expected_.clear();
    ahead_.clear();
    unread_layer_ = -1;
    unread_.clear();
    throw;
  }
}

}  // namespace fi
