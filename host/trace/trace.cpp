#include "host/trace/trace.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>

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

Trace::Trace(const std::string& path) : path_(path), origin_(Clock::now()) {
  file_ = std::fopen(path.c_str(), "w");
  if (!file_) fail("--trace: cannot create '%s': %s", path.c_str(), std::strerror(errno));
  std::setvbuf(file_, nullptr, _IONBF, 0);
  pending_ = "[\n";
  bool first = true;
  for (const Track track : {Track::Disk, Track::Upload, Track::Gpu, Track::Cpu}) {
    const nlohmann::json name = {{"name", "thread_name"}, {"ph", "M"}, {"pid", 1}, {"tid", static_cast<int>(track)},
                                 {"args", {{"name", track_name(track)}}}};
    pending_ += (first ? "" : ",\n") + name.dump();
    first = false;
  }
  write_pending();
}

void Trace::write_pending() {
  if (pending_.empty()) return;
  // A short write sets the stream's error flag, which close() reports.
  static_cast<void>(std::fwrite(pending_.data(), 1, pending_.size(), file_));
  written_ += pending_.size();
  pending_.clear();
}

Trace::~Trace() { close(); }

double Trace::microseconds(Clock::time_point time) const {
  return std::chrono::duration<double, std::micro>(time - origin_).count();
}

void Trace::add(Track track, const std::string& name, Clock::time_point start, Clock::time_point end) {
  add_microseconds(track, name, microseconds(start), microseconds(end));
}

void Trace::add_microseconds(Track track, const std::string& name, double start, double end) {
  // The name quoted and escaped as JSON; the rest is fixed text and numbers.
  const std::string quoted = nlohmann::json(name).dump();
  char numbers[96];
  std::snprintf(numbers, sizeof numbers, ",\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f}",
                static_cast<int>(track), start, end - start);
  const std::string span = ",\n{\"name\":" + quoted + ",\"cat\":\"" + track_name(track) + "\"" + numbers;
  std::lock_guard lock(mutex_);
  if (!file_) return;
  const uint64_t in_page = (written_ + pending_.size()) % kPageBytes;
  if (in_page + span.size() > kPageBytes && span.size() <= kPageBytes) pending_.append(kPageBytes - in_page, ' ');
  pending_ += span;
  if (pending_.size() >= kFlushBytes) write_pending();
}

bool Trace::close() {
  std::lock_guard lock(mutex_);
  if (!file_) return true;
  pending_ += "\n]\n";
  write_pending();
  const bool written = !std::ferror(file_);
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  return written && closed;
}

void Trace::finish() {
  if (!close()) fail("--trace: cannot write '%s'", path_.c_str());
}

}  // namespace fi
