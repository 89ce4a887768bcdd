#include <nvtx3/nvToolsExt.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/runtime.h"

namespace fi::cuda {

void use_device(int index) { FI_CUDA_CHECK(cudaSetDevice(index)); }

void device_memory(uint64_t* free_bytes, uint64_t* total_bytes) {
  size_t free_now = 0, total = 0;
  FI_CUDA_CHECK(cudaMemGetInfo(&free_now, &total));
  *free_bytes = free_now;
  *total_bytes = total;
}

Stream::Stream() {
  cudaStream_t stream = nullptr;
  FI_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  handle_ = stream;
}

// A failure dropped (destructors cannot throw) or reported in words of our own is cleared, so that
// no later launch check reports it as its own.
namespace {
void drop_error(cudaError_t status) {
  if (status != cudaSuccess) (void)cudaGetLastError();
}
}  // namespace

Stream::~Stream() { drop_error(cudaStreamDestroy(native(handle_))); }

void Stream::synchronize() const { FI_CUDA_CHECK(cudaStreamSynchronize(native(handle_))); }

Event::Event(bool timing) {
  cudaEvent_t event = nullptr;
  FI_CUDA_CHECK(cudaEventCreateWithFlags(&event, timing ? cudaEventDefault : cudaEventDisableTiming));
  handle_ = event;
}

Event::~Event() { drop_error(cudaEventDestroy(static_cast<cudaEvent_t>(handle_))); }

void Event::record(const Stream& stream) {
  FI_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(handle_), native(stream.handle())));
}

void Event::wait_on(const Stream& stream) const {
  FI_CUDA_CHECK(cudaStreamWaitEvent(native(stream.handle()), static_cast<cudaEvent_t>(handle_), 0));
}

void Event::synchronize() const { FI_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(handle_))); }

float Event::milliseconds_since(const Event& start) const {
  float milliseconds = 0.0f;
  FI_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, static_cast<cudaEvent_t>(start.handle_),
                                     static_cast<cudaEvent_t>(handle_)));
  return milliseconds;
}

DeviceArena::DeviceArena(uint64_t capacity) : capacity_(capacity) {
  void* base = nullptr;
  const cudaError_t status = cudaMalloc(&base, std::max<uint64_t>(capacity, 256));
  drop_error(status);
  if (status != cudaSuccess)
    fail("CUDA error: cudaMalloc of the %.2f GiB device arena failed: %s", static_cast<double>(capacity) / (1 << 30),
         cudaGetErrorString(status));
  base_ = static_cast<uint8_t*>(base);
}

DeviceArena::~DeviceArena() { drop_error(cudaFree(base_)); }

void* DeviceArena::allocate(uint64_t bytes, const char* what, uint64_t alignment) {
  const uint64_t start = (used_ + alignment - 1) / alignment * alignment;
  if (start > capacity_ || bytes > capacity_ - start)
    fail("internal: the device arena (%llu bytes) has no room for %llu bytes of %s (%llu used)",
         static_cast<unsigned long long>(capacity_), static_cast<unsigned long long>(bytes), what,
         static_cast<unsigned long long>(used_));
  used_ = start + bytes;
  return base_ + start;
}

PinnedBuffer::PinnedBuffer(uint64_t bytes) : size_(bytes) {
  void* data = nullptr;
  const cudaError_t status = cudaHostAlloc(&data, std::max<uint64_t>(bytes, 1), cudaHostAllocDefault);
  drop_error(status);
  if (status != cudaSuccess)
    fail("CUDA error: cudaHostAlloc of %.1f MiB of pinned memory failed: %s", static_cast<double>(bytes) / (1 << 20),
         cudaGetErrorString(status));
  data_ = static_cast<uint8_t*>(data);
}

PinnedBuffer::~PinnedBuffer() { drop_error(cudaFreeHost(data_)); }

void copy_to_device_async(void* device, const void* host, uint64_t bytes, const Stream& stream) {
  FI_CUDA_CHECK(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, native(stream.handle())));
}

void copy_to_host_async(void* host, const void* device, uint64_t bytes, const Stream& stream) {
  FI_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, native(stream.handle())));
}

void copy_on_device_async(void* destination, const void* source, uint64_t bytes, const Stream& stream) {
  FI_CUDA_CHECK(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyDeviceToDevice, native(stream.handle())));
}

void fill_zero_async(void* device, uint64_t bytes, const Stream& stream) {
  FI_CUDA_CHECK(cudaMemsetAsync(device, 0, bytes, native(stream.handle())));
}

NvtxRange::NvtxRange(const char* name) { nvtxRangePushA(name); }
NvtxRange::~NvtxRange() { nvtxRangePop(); }

uint64_t nvtx_range_start(const char* name) { return nvtxRangeStartA(name); }
void nvtx_range_end(uint64_t range) { nvtxRangeEnd(range); }

namespace {

constexpr int kReadThreads = 256;
static_assert(kReadThreads % 32 == 0, "whole warps");

// Sums the buffer with 16-byte loads; the sum is written so the reads cannot be optimised away.
__global__ void read_kernel(const float4* data, uint64_t count, float* sink) {
  float sum = 0.0f;
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    const float4 v = __ldcs(&data[i]);
    sum += v.x + v.y + v.z + v.w;
  }
  if (sum == 1234.5f) *sink = sum;
}

template <typename Pass>
double median_GBps(uint64_t bytes, Pass pass, const Stream& stream) {
  Event start(true), stop(true);
  pass();  // warm-up
  std::vector<double> rates;
  for (int i = 0; i < 5; ++i) {
    start.record(stream);
    pass();
    stop.record(stream);
    stop.synchronize();
    rates.push_back(static_cast<double>(bytes) / (stop.milliseconds_since(start) * 1e-3) / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[2];
}

}  // namespace

DeviceBandwidth measure_bandwidth(uint64_t bytes) {
  bytes = bytes / 16 * 16;
  Stream stream;
  DeviceArena arena(2 * bytes + 1024);  // three allocations, each aligned to 256 bytes
  auto* source = static_cast<uint8_t*>(arena.allocate(bytes, "bandwidth source"));
  auto* destination = static_cast<uint8_t*>(arena.allocate(bytes, "bandwidth destination"));
  auto* sink = arena.allocate_array<float>(1, "bandwidth sink");
  fill_zero_async(source, bytes, stream);
  PinnedBuffer pinned(bytes);
  std::memset(pinned.data(), 0, bytes);
  std::vector<uint8_t> pageable(bytes, 0);
  cudaDeviceProp properties{};
  int device = 0;
  FI_CUDA_CHECK(cudaGetDevice(&device));
  FI_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
  const int blocks = properties.multiProcessorCount * 8;
  const cudaStream_t s = native(stream.handle());

  DeviceBandwidth result;
  // One pass over 256 MiB takes about 55 us on an H200: timed in eights, so that a launch's gap and
  // the events' resolution do not weigh on the rate.
  constexpr int kReadPasses = 8;
  result.vram_read_GBps = median_GBps(kReadPasses * bytes, [&] {
    for (int pass = 0; pass < kReadPasses; ++pass) {
      FI_LAUNCH(blocks, kReadThreads, s, read_kernel)(reinterpret_cast<const float4*>(source), bytes / 16, sink);
      FI_CUDA_CHECK_LAUNCH("read_kernel");
    }
  }, stream);
  result.h2d_pinned_GBps = median_GBps(bytes, [&] { copy_to_device_async(destination, pinned.data(), bytes, stream); }, stream);
  result.h2d_pageable_GBps = median_GBps(bytes, [&] { copy_to_device_async(destination, pageable.data(), bytes, stream); }, stream);
  result.d2h_GBps = median_GBps(bytes, [&] { copy_to_host_async(pinned.data(), source, bytes, stream); }, stream);
  stream.synchronize();
  return result;
}

}  // namespace fi::cuda
