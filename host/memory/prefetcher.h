#pragma once
// The streaming pipeline: a ring of `depth` staging slots that one I/O thread keeps filled with the
// streamed units of a fixed schedule (the layers in compute order, then the output head, then the
// next token's layers ...). While the compute threads work on unit k, the reads for k+1 .. k+depth-1
// are in flight, so the next token's first layers arrive while this token's last ones compute.
// Compute blocks on a futex until its unit has arrived; the I/O thread sleeps in the kernel until a
// read completes or a slot is handed back — nobody polls.
#include <atomic>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "host/trace/trace.h"
#include "io/async_reader.h"
#include "planner/plan.h"

namespace fi {

class Prefetcher {
 public:
  // schedule[i]: the reads that bring schedule unit i, named names[i], into a slot. slots: depth *
  // slot_bytes bytes, 4 KiB-aligned, owned by the caller and outliving the prefetcher. Each unit's
  // reads are an NVTX range "read NAME" from submission to completion.
  Prefetcher(AsyncReader& reader, std::vector<std::vector<ReadSpan>> schedule, const std::vector<std::string>& names,
             uint8_t* slots, uint64_t slot_bytes, int depth);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Waits until schedule unit `index` (which must be the next in schedule order) is in its slot and
  // returns the slot. Rethrows a read error as Error.
  uint8_t* acquire(size_t index);
  // Hands the slot of the unit acquired last back for refilling.
  void release();
  // After a pass that ended in an error (a failed read, or any error between an acquire and its
  // release): stops reading, lets the reads in flight land and forgets every job. The next
  // acquire (of the schedule's first unit) starts reading again from there, so the next pass
  // streams as the first one did, and a file put right in between is read afresh.
  void abandon();

  size_t schedule_size() const { return schedule_.size(); }
  // Each unit's reads become a span on the trace's disk track (before the first acquire).
  void set_trace(Trace* trace) { trace_.store(trace); }
  double stall_seconds() const { return stall_seconds_; }  // compute time spent waiting for reads

 private:
  void run();
  void stop_thread();

  AsyncReader& reader_;
  std::vector<std::vector<ReadSpan>> schedule_;
  uint8_t* slots_;
  uint64_t slot_bytes_;
  int depth_;

  std::vector<std::atomic<uint64_t>> ready_;  // per slot: 1 + the job whose bytes it holds
  std::atomic<uint64_t> released_{0};        // jobs handed back by compute
  std::atomic<uint32_t> signal_{0};          // bumped on every release and on stop
  std::atomic<bool> stopping_{false};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
  uint64_t acquired_ = 0;  // compute side: jobs acquired so far
  double stall_seconds_ = 0.0;
  std::atomic<Trace*> trace_{nullptr};
  std::vector<std::string> read_names_;  // per schedule unit: "read NAME"
  std::thread thread_;
};

}  // namespace fi
