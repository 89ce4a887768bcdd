#pragma once
// What CUDA devices this process can use. The only cuda/ entry point the host side sees so far.
#include <cstdint>
#include <string>
#include <vector>

namespace fi::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;
  int multiprocessors = 0;
};

// Empty when the build has no CUDA, no driver is installed or no device is present; `why` then
// says which.
std::vector<DeviceInfo> list_devices(std::string* why);

}  // namespace fi::cuda
