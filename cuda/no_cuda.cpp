// The cuda/ entry points reached outside the GPU path (device listing, the probe's measurements, pinned memory), for builds without nvcc: no devices, and a clear
// error from anything that would need one.
#include "cuda/device_info.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "io/error.h"

namespace fi::cuda {

namespace {
constexpr const char* kNoCuda = "no CUDA device: this build has no CUDA support (nvcc was not found)";
}

std::vector<DeviceInfo> list_devices(std::string* why) {
  if (why) *why = kNoCuda;
  return {};
}

DeviceBandwidth measure_bandwidth(uint64_t) { fail("%s", kNoCuda); }
double measure_matvec_GBps(TensorType, uint64_t) { fail("%s", kNoCuda); }
void use_device(int) { fail("%s", kNoCuda); }
void device_memory(uint64_t*, uint64_t*) { fail("%s", kNoCuda); }
NvtxRange::NvtxRange(const char*) {}
NvtxRange::~NvtxRange() = default;
uint64_t nvtx_range_start(const char*) { return 0; }
void nvtx_range_end(uint64_t) {}
PinnedBuffer::PinnedBuffer(uint64_t) { fail("%s", kNoCuda); }
PinnedBuffer::~PinnedBuffer() = default;

}  // namespace fi::cuda
