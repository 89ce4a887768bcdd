#pragma once
// A CPU stand-in for the CUDA execution model, so the kernels' logic (indexing, warp shuffles,
// barriers, shared memory, online softmax) is tested on machines without a GPU, CI included.
// Include this, then cuda/kernels.cu itself: the same kernels and launchers compile with the host
// compiler. Each block runs as blockDim.x threads, one block after another; warp shuffles and
// __syncthreads are barriers; __shared__ variables are statics (one block at a time).
// What it cannot show: speed, memory coalescing, alignment faults, or races the hardware's warp
// scheduling would expose. Device pointers are host pointers here.
#define FI_CUDA_EMULATION 1
#define __launch_bounds__(...)

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <array>
#include <barrier>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#undef __shared__
#define __shared__ static

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

namespace fi::cuda::emulation {

constexpr unsigned kWarpSize = 32;

struct Block {
  explicit Block(unsigned threads) : all(threads) {
    for (unsigned first = 0; first < threads; first += kWarpSize)
      warps.push_back(std::make_unique<std::barrier<>>(std::min(kWarpSize, threads - first)));
    lanes.resize(warps.size());
  }
  std::barrier<> all;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<std::array<uint64_t, kWarpSize>> lanes;  // shuffle exchange, one slot per lane
};

inline thread_local Block* current_block = nullptr;

inline unsigned lane() { return threadIdx.x % kWarpSize; }
inline unsigned warp() { return threadIdx.x / kWarpSize; }

// Every lane publishes its value, then reads the one it asked for.
template <typename T>
T exchange(T value, unsigned source_lane) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffles move at most 64 bits");
  auto& slots = current_block->lanes[warp()];
  std::memcpy(&slots[lane()], &value, sizeof(T));
  current_block->warps[warp()]->arrive_and_wait();
  T result;
  std::memcpy(&result, &slots[source_lane % kWarpSize], sizeof(T));
  current_block->warps[warp()]->arrive_and_wait();
  return result;
}

template <typename Kernel>
struct Launch {
  dim3 grid, block;
  Kernel kernel;
  template <typename... Args>
  void operator()(Args... args) const {
    gridDim = grid;
    blockDim = block;
    for (unsigned b = 0; b < grid.x; ++b) {
      Block state(block.x);
      std::vector<std::thread> threads;
      for (unsigned t = 0; t < block.x; ++t)
        threads.emplace_back([&, b, t] {
          threadIdx = {t, 0, 0};
          blockIdx = {b, 0, 0};
          current_block = &state;
          kernel(args...);
          // An exited thread no longer holds up its warp or its block.
          state.warps[warp()]->arrive_and_drop();
          state.all.arrive_and_drop();
        });
      for (std::thread& thread : threads) thread.join();
    }
  }
};

}  // namespace fi::cuda::emulation

// Runs at once, on the calling thread's behalf: every stream is the default, synchronous one.
#define FI_LAUNCH(grid, block, stream, ...)                                                          \
  ((void)(stream), ::fi::cuda::emulation::Launch<decltype(&__VA_ARGS__)>{                            \
                       dim3(static_cast<unsigned>(grid)), dim3(static_cast<unsigned>(block)), &__VA_ARGS__})

template <typename T>
T __shfl_xor_sync(unsigned, T value, int lane_mask) {
  return fi::cuda::emulation::exchange(value, fi::cuda::emulation::lane() ^ static_cast<unsigned>(lane_mask));
}
template <typename T>
T __shfl_sync(unsigned, T value, int source_lane) {
  return fi::cuda::emulation::exchange(value, static_cast<unsigned>(source_lane));
}
inline void __syncwarp() { fi::cuda::emulation::current_block->warps[fi::cuda::emulation::warp()]->arrive_and_wait(); }
inline void __syncthreads() { fi::cuda::emulation::current_block->all.arrive_and_wait(); }
template <typename T>
T __ldg(const T* p) {
  return *p;
}
template <typename T>
T __ldcs(const T* p) {
  return *p;
}
template <typename T>
T min(T a, T b) {
  return b < a ? b : a;
}
