#pragma once
// The CUDA runtime as the host side sees it: devices, a budgeted device arena, streams, events,
// pinned host buffers, copies and NVTX ranges. Plain C++: no CUDA header leaks out, so host/ is
// compiled by the host compiler. Every failure throws fi::Error naming the call and CUDA's message.
#include <cstdint>
#include <memory>
#include <string>

namespace fi::cuda {

// Makes `index` the current device of the calling thread (throws when it cannot).
void use_device(int index);
// Free and total bytes of the current device.
void device_memory(uint64_t* free_bytes, uint64_t* total_bytes);

class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  void* handle() const { return handle_; }  // a cudaStream_t
  void synchronize() const;

 private:
  void* handle_ = nullptr;
};

class Event {
 public:
  explicit Event(bool timing = false);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(const Stream& stream);
  void wait_on(const Stream& stream) const;  // `stream` waits for this event, the host does not
  void synchronize() const;
  // Milliseconds from `start` to this event (both recorded with timing).
  float milliseconds_since(const Event& start) const;

 private:
  void* handle_ = nullptr;
};

// One device allocation of exactly `capacity` bytes handed out by a bump allocator that refuses
// to pass its end: everything the engine keeps on the device comes from here, so a budget holds.
class DeviceArena {
 public:
  explicit DeviceArena(uint64_t capacity);
  ~DeviceArena();
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;
  void* allocate(uint64_t bytes, const char* what, uint64_t alignment = 256);
  template <typename T>
  T* allocate_array(uint64_t count, const char* what) {
    return static_cast<T*>(allocate(count * sizeof(T), what));
  }
  uint64_t capacity() const { return capacity_; }
  uint64_t used() const { return used_; }

 private:
  uint8_t* base_ = nullptr;
  uint64_t capacity_ = 0;
  uint64_t used_ = 0;
};

// Page-locked host memory (cudaHostAlloc): the only host memory copies run asynchronously from.
class PinnedBuffer {
 public:
  explicit PinnedBuffer(uint64_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

void copy_to_device_async(void* device, const void* host, uint64_t bytes, const Stream& stream);
void copy_to_host_async(void* host, const void* device, uint64_t bytes, const Stream& stream);
void copy_on_device_async(void* destination, const void* source, uint64_t bytes, const Stream& stream);
void fill_zero_async(void* device, uint64_t bytes, const Stream& stream);

// An NVTX range for Nsight Systems, open for the object's lifetime.
class NvtxRange {
 public:
  explicit NvtxRange(const char* name);
  explicit NvtxRange(const std::string& name) : NvtxRange(name.c_str()) {}
  ~NvtxRange();
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

// An NVTX range that may overlap others and end on another thread than it started on (reads in
// flight); nvtx_range_end takes what nvtx_range_start returned. No-ops without a profiler attached
// and in builds without CUDA.
uint64_t nvtx_range_start(const char* name);
void nvtx_range_end(uint64_t range);

// Bandwidths of the current device in GB/s, each the median of 5 timed passes over `bytes`.
struct DeviceBandwidth {
  double vram_read_GBps = 0.0;  // a kernel that reads and sums the buffer
  double h2d_pinned_GBps = 0.0;
  double h2d_pageable_GBps = 0.0;
  double d2h_GBps = 0.0;
};
DeviceBandwidth measure_bandwidth(uint64_t bytes);

}  // namespace fi::cuda
