#include "host/memory/prefetcher.h"

#include <chrono>

#include "cuda/runtime.h"
#include "io/error.h"

namespace fi {

namespace {
constexpr uint64_t kFailed = UINT64_MAX;
}

Prefetcher::Prefetcher(AsyncReader& reader, std::vector<std::vector<ReadSpan>> schedule,
                       const std::vector<std::string>& names, uint8_t* slots, uint64_t slot_bytes, int depth)
    : reader_(reader), schedule_(std::move(schedule)), slots_(slots), slot_bytes_(slot_bytes), depth_(depth),
      ready_(static_cast<size_t>(depth)) {
  if (depth < 1 || schedule_.empty()) fail("internal: prefetcher needs a schedule and at least one slot");
  if (names.size() != schedule_.size()) fail("internal: %zu names for %zu scheduled units", names.size(), schedule_.size());
  for (const std::string& name : names) read_names_.push_back("read " + name);
  for (const auto& reads : schedule_) {
    if (reads.empty()) fail("internal: a scheduled unit has nothing to read");
    for (const ReadSpan& span : reads)
      if (span.slot_offset + span.bytes > slot_bytes) fail("internal: a read does not fit its staging slot");
  }
  thread_ = std::thread([this] { run(); });
}

Prefetcher::~Prefetcher() {
  stop_thread();
  // Reads still in flight land in the slots: let them finish before the slots can be freed.
  try {
    while (reader_.outstanding() > 0) reader_.wait();
  } catch (const Error&) {
    // The error was already handed to compute, or nobody is left to care.
  }
}

void Prefetcher::stop_thread() {
  if (!thread_.joinable()) return;
  stopping_.store(true);
  signal_.fetch_add(1);
  signal_.notify_all();
  thread_.join();
}

void Prefetcher::abandon() {
  if (!thread_.joinable()) return;
  stop_thread();
  reader_.abandon();
  stopping_.store(false);
  failed_.store(false);
  error_ = nullptr;
  released_.store(0);
  acquired_ = 0;
  for (auto& ready : ready_) ready.store(0);
}

void Prefetcher::run() {
  try {
    uint64_t next = 0;  // the next job to submit; job j is schedule unit j % size in slot j % depth
    std::vector<size_t> pending(static_cast<size_t>(depth_), 0);
    std::vector<Trace::Clock::time_point> submitted(static_cast<size_t>(depth_));
    std::vector<uint64_t> nvtx_ranges(static_cast<size_t>(depth_));
    while (!stopping_.load()) {
      const uint32_t signal = signal_.load();
      while (next < released_.load() + static_cast<uint64_t>(depth_)) {
        const size_t slot = next % static_cast<uint64_t>(depth_);
        const auto& reads = schedule_[next % schedule_.size()];
        pending[slot] = reads.size();
        submitted[slot] = Trace::Clock::now();
        nvtx_ranges[slot] = cuda::nvtx_range_start(read_names_[next % schedule_.size()].c_str());
        for (const ReadSpan& span : reads)
          reader_.submit({slots_ + slot * slot_bytes_ + span.slot_offset, span.file_offset, span.bytes, next});
        ++next;
      }
      if (reader_.outstanding() > 0) {
        const uint64_t job = reader_.wait();
        const size_t slot = job % static_cast<uint64_t>(depth_);
        if (--pending[slot] == 0) {
          cuda::nvtx_range_end(nvtx_ranges[slot]);
          if (Trace* trace = trace_.load())
            trace->add(Trace::Track::Disk, read_names_[job % schedule_.size()], submitted[slot], Trace::Clock::now());
          ready_[slot].store(job + 1);
          ready_[slot].notify_all();
        }
      } else {
        signal_.wait(signal);  // every slot is full: sleep until compute hands one back
      }
    }
  } catch (...) {
    error_ = std::current_exception();
    failed_.store(true);
    for (auto& ready : ready_) {
      ready.store(kFailed);
      ready.notify_all();
    }
  }
}

uint8_t* Prefetcher::acquire(size_t index) {
  const uint64_t job = acquired_;
  if (index != job % schedule_.size()) fail("internal: streamed units acquired out of order");
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });  // the first pass after abandon()
  const size_t slot = job % static_cast<uint64_t>(depth_);
  uint64_t ready = ready_[slot].load();
  if (ready != job + 1) {
    const auto start = std::chrono::steady_clock::now();
    while (ready != job + 1) {
      if (ready == kFailed) std::rethrow_exception(error_);
      ready_[slot].wait(ready);
      ready = ready_[slot].load();
    }
    stall_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  ++acquired_;
  return slots_ + slot * slot_bytes_;
}

void Prefetcher::release() {
  released_.fetch_add(1);
  signal_.fetch_add(1);
  signal_.notify_one();
}

}  // namespace fi
