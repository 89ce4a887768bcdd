#pragma once
// Spans of work (reads, uploads, compute per layer) collected for a Chrome/Perfetto trace
// (`--trace FILE`; open in ui.perfetto.dev or chrome://tracing). The same spans are NVTX ranges
// for Nsight Systems. Thread-safe: the I/O thread, the compute thread and the GPU's resolved
// events all add spans.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace fi {

class Trace {
 public:
  using Clock = std::chrono::steady_clock;
  Trace() : origin_(Clock::now()) {}

  // Tracks: one row each in the viewer.
  enum class Track { Disk, Upload, Gpu, Cpu };
  void add(Track track, std::string name, Clock::time_point start, Clock::time_point end);
  // The same, with times in microseconds since the trace began (for spans timed by CUDA events).
  void add_microseconds(Track track, std::string name, double start, double end);
  double microseconds(Clock::time_point time) const;
  // {"traceEvents": [...]} with complete ("X") events, one thread per track.
  void write(const std::string& path) const;

 private:
  struct Span {
    Track track;
    std::string name;
    double start, end;
  };
  Clock::time_point origin_;
  mutable std::mutex mutex_;
  std::vector<Span> spans_;
};

}  // namespace fi
