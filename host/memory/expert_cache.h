#pragma once
// Experts read on demand: a cache of fixed-size slots in host memory, each holding one (layer,
// expert) slice set of the stacked expert tensors, filled as the router chooses. A layer's chosen
// experts that are cached compute at once; the reads of the others are issued together as soon as
// the choice is known (deep queue, direct I/O, into the slots they will be computed from) and each
// computes as it arrives. An expert is never read while it is cached, and a batch reads each of
// its chosen experts once. Which cached expert makes room is the policy's choice.
// Speculation: the forward pass may say which experts the next layer will likely choose (its
// router applied early); their reads start right after the current layer's own, so the disk works
// while this layer computes. A read still in flight when its expert is chosen is waited for, never
// repeated. A predicted expert is not evicted before its layer has chosen; a wrong prediction then
// goes first (recency) or by its count of real uses (frequency). Reading ahead pays only while the
// predictions are mostly right (a wrong one costs a read and evicts a cached expert): below
// kMinimumPrecision of recent predictions it pauses, still scoring what it would have read, and
// resumes when they improve. Whether it pays at all depends on the disk and the compute of the
// hour, so by default it is measured as it runs (ReadAheadTrial) and kept only while faster.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "host/kernels/thread_pool.h"
#include "host/memory/arena.h"
#include "host/memory/host_weights.h"
#include "host/trace/trace.h"
#include "io/async_reader.h"
#include "planner/plan.h"

namespace fi {

// Recency evicts the expert used longest ago; frequency the one chosen least often (counts halved
// every so often, so yesterday's favourites fade), recency breaking ties.
enum class ExpertPolicy { Recency, Frequency };
std::optional<ExpertPolicy> parse_expert_policy(const std::string& name);
const char* expert_policy_name(ExpertPolicy policy);

struct ExpertCacheOptions {
  ExpertPolicy policy = ExpertPolicy::Frequency;
  bool speculate = true;  // read the experts the forward pass expects (expect()) ahead of their use
  bool measured = true;   // ... only while ReadAheadTrial finds decode faster with it
};

// Reading the next layer's experts ahead hides their reads where the disk has time to spare, and
// costs an early router product per layer and the wrong predictions' reads. Side by side it gained
// 8-24% on some days and files and cost 2-15% on others (a fast disk with few misses; a slow disk
// busy with the misses themselves), and no timing rule made from a layer's compute and a read's
// latency told them apart. So decode measures it: after a first block of kBlockLayers layers that
// is not counted (the cache fills and the disk wakes whichever the setting), consecutive layers of
// decode run in blocks, the first kTrialBlocks of them reading ahead and not in the order on, off,
// off, on (repeated), so that a disk whose rate drifts steadily (on this VM it may double within a
// run as the host caches the file) favours neither; then the faster setting runs, and one block in
// kExploreEvery tries the other, judged against the mean of the two blocks around it for the same
// reason; the setting changes when the last kJudgedExplorations explored blocks together beat the
// blocks around them, so that a change of the disk or of the routing shows and one noisy block does
// not. A layer's time is from its choice to the next layer's, waits included, each layer at most
// kOutlier times its setting's moving average over about kWindowLayers (also reported).
class ReadAheadTrial {
 public:
  bool reading_ahead() const { return reading_ahead_; }
  bool prefers_reading_ahead() const { return preferred_; }  // the setting it runs between explorations
  void layer_passed(double seconds);
  double seconds_reading_ahead() const { return mean_[1]; }
  double seconds_not_reading_ahead() const { return mean_[0]; }

 private:
  void block_passed(double block_seconds);

  static constexpr int kBlockLayers = 48;
  static constexpr uint64_t kTrialBlocks = 8;
  static constexpr uint64_t kExploreEvery = 8;
  static_assert(kExploreEvery >= 3, "an explored block is judged by the blocks before and after it");
  static constexpr size_t kJudgedExplorations = 3;
  static constexpr uint64_t kWindowLayers = 4 * kBlockLayers;
  static_assert(kTrialBlocks % 4 == 0 && kTrialBlocks / 2 * kBlockLayers <= kWindowLayers,
                "the trial's averages are over whole on, off, off, on rounds");
  static constexpr double kOutlier = 4.0;
  struct Exploration {
    double explored = 0;  // seconds of the explored block
    double around = 0;    // the mean of the preferred blocks before and after it
  };
  double mean_[2] = {0, 0};
  uint64_t samples_[2] = {0, 0};
  int uncounted_layers_ = kBlockLayers;
  double block_seconds_ = 0;        // this block's layers so far
  double preferred_before_ = 0;     // the preferred setting's last block
  std::optional<double> explored_;  // the other setting's block, judged after the next
  std::array<Exploration, kJudgedExplorations> explorations_{};  // since the last change, a ring
  size_t explorations_held_ = 0;
  int in_block_ = 0;
  uint64_t blocks_ = 0;
  bool reading_ahead_ = true;
  bool preferred_ = true;
};

struct ExpertCacheStats {
  uint64_t uses = 0;        // (layer, expert) uses, one per batch that chose it
  uint64_t hits = 0;        // of them, found in the cache
  uint64_t experts_read = 0;  // reads started, speculative ones included
  uint64_t bytes_read = 0;    // by them, alignment included
  double wait_seconds = 0;  // compute time spent waiting for expert reads
  uint64_t speculative_reads = 0;  // experts read on a prediction, before any layer chose them
  uint64_t speculative_used = 0;   // of them, chosen by the layer they were predicted for
  uint64_t speculation_paused = 0;  // predictions not read because recent ones were often wrong
  uint64_t speculative_bytes_wasted = 0;  // read for predictions their layer did not choose
  uint64_t layers_not_read_ahead = 0;  // decode uses while ReadAheadTrial had reading ahead off
  double layer_seconds_reading_ahead = 0;  // ReadAheadTrial's averages
  double layer_seconds_not_reading_ahead = 0;
};

// The expert cache's reader: `io` with a queue deep enough for experts_in_flight experts, each as
// many requests as its tensors' slices split into, no shallower than `io` asks and at most
// kMaxQueueDepth.
ReaderOptions expert_reader_options(const ExpertCachePlan& plan, ReaderOptions io);

class ExpertCache {
 public:
  // plan.slots slots of plan.slot_bytes from `arena`; reads through a reader of their own.
  ExpertCache(const std::string& path, const ExpertCachePlan& plan, HostArena& arena, ThreadPool& pool,
              const ReaderOptions& io, const ExpertCacheOptions& options);
  ~ExpertCache();
  ExpertCache(const ExpertCache&) = delete;
  ExpertCache& operator=(const ExpertCache&) = delete;

  // `experts`: distinct experts of `layer` the batch chose; `predictable`: a batch the forward pass
  // predicts for (decode), the only ones whose layers and reads time reading ahead.
  void use(int64_t layer, std::span<const int32_t> experts, bool predictable, const ExpertUse& use);
  // `experts` of `layer` will likely be chosen: those not cached are read after the next use()'s
  // own misses have been issued (while slots are free to take).
  void expect(int64_t layer, std::span<const int32_t> experts);

  // Reads uniformly random experts through this cache's reader into `in_flight` of its slots, keeping
  // that many experts' reads queued, until at least `bytes` have arrived (after a quarter as much
  // unmeasured); nothing is computed. The disk's rate for on-demand expert reads, in GB/s, to set
  // the limit by: scattered requests of an expert's size at the depth a layer's misses give, where
  // a long sequential probe may flatter the disk. Only between forward passes; the slots it used
  // are left empty. Another `seed`, another sample of experts.
  double read_only_GBps(uint64_t bytes, int in_flight, uint64_t seed = 0);

  ExpertCacheStats stats() const {
    ExpertCacheStats stats = stats_;
    stats.layer_seconds_reading_ahead = trial_.seconds_reading_ahead();
    stats.layer_seconds_not_reading_ahead = trial_.seconds_not_reading_ahead();
    return stats;
  }
  ExpertPolicy policy() const { return options_.policy; }
  bool speculates() const { return options_.speculate; }
  bool measures_read_ahead() const { return options_.speculate && options_.measured; }
  // Predictions are read while they are mostly right; while paused, one pass in kPausedSampling
  // still predicts, to score them, so that the router's extra product is mostly saved.
  bool wants_predictions() const {
    return options_.speculate && (!options_.measured || trial_.reading_ahead()) &&
           (precision_ >= kMinimumPrecision || clock_ / plan_.experts.layers.size() % kPausedSampling == 0);
  }
  int64_t slots() const { return static_cast<int64_t>(slots_.size()); }
  void set_trace(Trace* trace) { trace_ = trace; }

 private:
  struct Slot {
    uint8_t* memory = nullptr;
    int64_t key = -1;  // layer * experts + expert, or -1 when empty
    uint64_t last_use = 0;
    int reads_left = 0;
    bool pinned = false;  // being read or computed with: not to be evicted
    bool speculative = false;  // read on a prediction and not chosen yet
    bool read_ahead = false;   // its last read was speculative (for the trace)
    bool held = false;         // cached when predicted: kept until its layer has chosen
    bool computed = false;     // used since its last read (its next use interleaves it)
    uint64_t read_bytes = 0;   // of its last read
    Trace::Clock::time_point submitted;
    ExpertWeights weights;
  };
  int64_t key(int64_t layer, int32_t expert) const { return layer * plan_.experts.count + expert; }
  // An unpinned slot to fill (empty first, else the policy's victim), or -1.
  int64_t victim() const;
  // The aligned reads of `expert`'s slices in file order, with where each slice lands in a slot
  // (offsets) and its tensor (order: index into the layer's gate, up, down).
  std::vector<ReadSpan> expert_reads(int64_t layer, int32_t expert, std::vector<size_t>* order,
                                     std::vector<uint64_t>* offsets) const;
  // Starts reading `expert` into a free or evicted slot; false when every slot is pinned.
  bool start_read(int64_t layer, int32_t expert);
  // Interleaves the slot's matrices that the kernels interleave.
  void interleave(Slot& slot);
  // `decode`: arriving in a batch the forward pass predicts for (a prompt's arrive interleaved).
  void arrived(Slot& slot, bool decode);
  void note_use(Slot& slot);
  // Waits for one read to complete; the slot whose reads are all in, or null.
  Slot* wait_for_read(bool decode);

  ExpertCachePlan plan_;
  ThreadPool& pool_;
  ExpertCacheOptions options_;
  std::unique_ptr<AsyncReader> reader_;
  std::vector<Slot> slots_;
  std::vector<int64_t> slot_of_;     // per key: its slot, or -1
  std::vector<uint32_t> frequency_;  // per key: times chosen (halved every kAgingUses uses)
  uint64_t clock_ = 0;
  uint64_t uses_since_aging_ = 0;
  int64_t expected_layer_ = -1;
  std::vector<int32_t> expected_;
  std::vector<int64_t> ahead_;  // slots read on a prediction whose layer has not chosen yet
  // Recent predictions' share of right ones (a moving average over about 64), and while paused the
  // predictions that would have been read.
  static constexpr double kMinimumPrecision = 0.75;
  static constexpr uint64_t kPausedSampling = 4;
  double precision_ = 1.0;
  int64_t unread_layer_ = -1;
  std::vector<int32_t> unread_;
  void score(bool right) { precision_ += (static_cast<double>(right) - precision_) / 64.0; }
  ReadAheadTrial trial_;
  Trace::Clock::time_point last_use_;
  int64_t last_layer_ = -1;
  ExpertCacheStats stats_;
  Trace* trace_ = nullptr;
};

}  // namespace fi
