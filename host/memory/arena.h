#pragma once
// Host memory for one model run. With a budget: a single reservation of exactly that many bytes,
// locked in RAM (mlock), handed out by a bump allocator that refuses to pass the end — resident
// weights, staging slots, KV cache and scratch all come from it, so the budget is real. Without a
// budget: each allocation is its own untouched mapping (pages cost nothing until used).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/memory/buffer.h"

namespace fi {

class HostArena {
 public:
  // capacity: the budget in bytes, or none for unbounded; lock: mlock the reservation.
  HostArena(std::optional<uint64_t> capacity, bool lock);
  HostArena(const HostArena&) = delete;
  HostArena& operator=(const HostArena&) = delete;

  // `bytes` aligned to `alignment` (a power of two up to 4096); what: for the error message.
  uint8_t* allocate(uint64_t bytes, uint64_t alignment, const char* what);
  template <typename T>
  T* allocate_array(uint64_t count, const char* what) {
    return reinterpret_cast<T*>(allocate(count * sizeof(T), alignof(T) < 64 ? 64 : alignof(T), what));
  }

  std::optional<uint64_t> capacity() const { return capacity_; }
  uint64_t used() const { return used_; }  // the high-water mark: nothing is ever freed
  bool locked() const { return locked_; }
  // Why locking failed, or empty.
  const std::string& lock_refusal() const { return lock_refusal_; }

 private:
  std::optional<uint64_t> capacity_;
  PageBuffer reservation_;
  std::vector<PageBuffer> separate_;
  uint64_t used_ = 0;
  bool locked_ = false;
  std::string lock_refusal_;
};

}  // namespace fi
