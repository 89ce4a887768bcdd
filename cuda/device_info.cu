#include <cuda_runtime.h>

#include "cuda/device_info.h"

namespace fi::cuda {

// Every failure here is tolerated (a device that cannot be used is left out), so each is cleared:
// cudaGetLastError would otherwise hand it to the next launch check. The calling thread's current
// device is left as it was.
std::vector<DeviceInfo> list_devices(std::string* why) {
  std::vector<DeviceInfo> devices;
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    if (why) *why = std::string("no CUDA device: cudaGetDeviceCount: ") + cudaGetErrorString(status);
    return devices;
  }
  int current = 0;
  const bool has_current = cudaGetDevice(&current) == cudaSuccess;
  for (int index = 0; index < count; ++index) {
    cudaDeviceProp properties{};
    cudaError_t error = cudaGetDeviceProperties(&properties, index);
    if (error != cudaSuccess) {
      (void)cudaGetLastError();
      if (why) *why = std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(error);
      continue;
    }
    DeviceInfo info;
    info.index = index;
    info.name = properties.name;
    info.compute_major = properties.major;
    info.compute_minor = properties.minor;
    info.total_bytes = properties.totalGlobalMem;
    info.multiprocessors = properties.multiProcessorCount;
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaSetDevice(index) == cudaSuccess && cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess)
      info.free_bytes = free_bytes;
    else
      (void)cudaGetLastError();
    devices.push_back(info);
  }
  if (!has_current || cudaSetDevice(current) != cudaSuccess) (void)cudaGetLastError();
  if (devices.empty() && why && why->empty()) *why = "no CUDA device present";
  return devices;
}

}  // namespace fi::cuda
