#include "cuda/device_info.h"

namespace fi::cuda {

std::vector<DeviceInfo> list_devices(std::string* why) {
  if (why) *why = "no CUDA device: this build has no CUDA support (nvcc was not found)";
  return {};
}

}  // namespace fi::cuda
