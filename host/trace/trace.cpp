#include "host/trace/trace.h"

#include <nlohmann/json.hpp>

#include <fstream>

#include "io/error.h"

namespace fi {

namespace {
const char* track_name(Trace::Track track) {
  switch (track) {
    case Trace::Track::Disk: return "disk reads";
    case Trace::Track::Upload: return "uploads (GPU)";
    case Trace::Track::Gpu: return "compute (GPU)";
    case Trace::Track::Cpu: return "compute (CPU)";
  }
  return "?";
}
}  // namespace

double Trace::microseconds(Clock::time_point time) const {
  return std::chrono::duration<double, std::micro>(time - origin_).count();
}

void Trace::add(Track track, std::string name, Clock::time_point start, Clock::time_point end) {
  add_microseconds(track, std::move(name), microseconds(start), microseconds(end));
}

void Trace::add_microseconds(Track track, std::string name, double start, double end) {
  std::lock_guard lock(mutex_);
  spans_.push_back({track, std::move(name), start, end});
}

void Trace::write(const std::string& path) const {
  nlohmann::json events = nlohmann::json::array();
  for (const Track track : {Track::Disk, Track::Upload, Track::Gpu, Track::Cpu})
    events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", 1}, {"tid", static_cast<int>(track)},
                      {"args", {{"name", track_name(track)}}}});
  {
    std::lock_guard lock(mutex_);
    for (const Span& span : spans_)
      events.push_back({{"name", span.name}, {"cat", track_name(span.track)}, {"ph", "X"}, {"pid", 1},
                        {"tid", static_cast<int>(span.track)}, {"ts", span.start}, {"dur", span.end - span.start}});
  }
  std::ofstream out(path);
  out << nlohmann::json{{"traceEvents", events}, {"displayTimeUnit", "ms"}}.dump() << "\n";
  out.close();
  if (!out) fail("--trace: cannot write '%s'", path.c_str());
}

}  // namespace fi
