#include "io/fault_injection.h"

#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "io/error.h"

namespace fi {

namespace {

struct Fault {
  InjectedFault kind;
  uint64_t offset;
  bool used;
};

struct Faults {
  std::mutex mutex;
  std::vector<Fault> list;
};

Faults* parse() {
  const char* text = std::getenv("FLEXINFER_INJECT_IO_FAULT");
  if (!text || !*text) return nullptr;
  auto faults = std::make_unique<Faults>();
  std::string spec = text;
  size_t begin = 0;
  while (begin <= spec.size()) {
    const size_t end = spec.find(',', begin) == std::string::npos ? spec.size() : spec.find(',', begin);
    const std::string item = spec.substr(begin, end - begin);
    const size_t at = item.find('@');
    const std::string kind = item.substr(0, at);
    char* parsed_end = nullptr;
    const unsigned long long offset = at == std::string::npos ? 0 : std::strtoull(item.c_str() + at + 1, &parsed_end, 10);
    InjectedFault fault = InjectedFault::None;
    if (kind == "eio") fault = InjectedFault::IoError;
    if (kind == "short") fault = InjectedFault::ShortRead;
    if (kind == "eintr") fault = InjectedFault::Interrupted;
    if (fault == InjectedFault::None || at == std::string::npos || !parsed_end || *parsed_end)
      fail("FLEXINFER_INJECT_IO_FAULT: '%s' is not KIND@OFFSET (KIND: eio, short, eintr)", item.c_str());
    faults->list.push_back({fault, offset, false});
    begin = end + 1;
  }
  return faults.release();  // lives for the process: readers on any thread may ask
}

}  // namespace

InjectedFault take_injected_fault(uint64_t offset, uint64_t bytes) {
  static Faults* const faults = parse();
  if (!faults) return InjectedFault::None;
  std::lock_guard lock(faults->mutex);
  for (Fault& fault : faults->list) {
    if (fault.offset < offset || fault.offset >= offset + bytes) continue;
    if (fault.kind == InjectedFault::IoError) return fault.kind;
    if (!fault.used) {
      fault.used = true;
      return fault.kind;
    }
  }
  return InjectedFault::None;
}

}  // namespace fi
