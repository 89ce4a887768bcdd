#pragma once
// The host-memory reference device's memory (tests/cuda_reference_backend.cpp): how much is free
// and in all, so a test can give the engine a device that is nearly full.
#include <cstdint>

namespace fi::test {

inline constexpr uint64_t kReferenceDeviceFree = 64ull << 30;
inline constexpr uint64_t kReferenceDeviceTotal = 80ull << 30;

// From now on the device reports `free_bytes` free (less what is allocated on it) of `total_bytes`.
void set_reference_device_memory(uint64_t free_bytes, uint64_t total_bytes);
// Device memory allocated and not yet freed.
uint64_t reference_device_allocated();
// The high-water mark of allocated device memory starts again from what is allocated now
// (returned); reference_device_peak() is the most allocated at once since.
uint64_t reset_reference_device_peak();
uint64_t reference_device_peak();

// The device's memory set for one scope, then the defaults again (scopes do not nest).
class ReferenceDeviceMemory {
 public:
  ReferenceDeviceMemory(uint64_t free_bytes, uint64_t total_bytes) {
    set_reference_device_memory(free_bytes, total_bytes);
  }
  ~ReferenceDeviceMemory() { set_reference_device_memory(kReferenceDeviceFree, kReferenceDeviceTotal); }
  ReferenceDeviceMemory(const ReferenceDeviceMemory&) = delete;
  ReferenceDeviceMemory& operator=(const ReferenceDeviceMemory&) = delete;
};

}  // namespace fi::test
