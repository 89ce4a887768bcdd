#pragma once
// Spans of work (reads, uploads, compute per layer) for a Chrome/Perfetto trace (`--trace FILE`;
// open in ui.perfetto.dev or chrome://tracing). The same spans are NVTX ranges for Nsight Systems.
// Spans are written to the file as they are added, in the trace format's JSON array form, whose
// closing bracket viewers do not need: a chat or server session traces in constant memory, and a
// run that is killed still leaves a trace (up to its last kFlushBytes of spans; the file always
// ends after a whole span). Thread-safe: the I/O thread, the compute thread and the GPU's resolved
// events all add spans.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace fi {

class Trace {
 public:
  using Clock = std::chrono::steady_clock;
  // Creates (truncates) `path`; fails with a one-line error when it cannot.
  explicit Trace(const std::string& path);
  ~Trace();
  Trace(const Trace&) = delete;
  Trace& operator=(const Trace&) = delete;

  // Tracks: one row each in the viewer.
  enum class Track { Disk, Upload, Gpu, Cpu };
  void add(Track track, const std::string& name, Clock::time_point start, Clock::time_point end);
  // The same, with times in microseconds since the trace began (for spans timed by CUDA events).
  void add_microseconds(Track track, const std::string& name, double start, double end);
  double microseconds(Clock::time_point time) const;
  // Closes the array and the file; fails when any of it could not be written. Spans added later
  // are dropped. The destructor closes an unfinished trace without failing.
  void finish();

 private:
  bool close();  // false when the file could not be written
  // Whole spans go to the file together, never a part of one: stdio's own buffer would leave a
  // killed run's file ending inside a span.
  static constexpr size_t kFlushBytes = 64 << 10;
  // A kill during a write() may cut it short, but only where the kernel's copy moves on to the next
  // page of the file: a span that would cross a page boundary starts after it, the gap spaces.
  static constexpr uint64_t kPageBytes = 4096;
  void write_pending();
  std::string path_;
  Clock::time_point origin_;
  std::mutex mutex_;
  std::FILE* file_ = nullptr;  // unbuffered
  uint64_t written_ = 0;         // bytes handed to the file so far
  std::string pending_;
};

}  // namespace fi
