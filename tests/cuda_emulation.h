#pragma once
// A CPU stand-in for the CUDA execution model, so the kernels' logic (indexing, warp shuffles,
// barriers, shared memory, online softmax) is tested on machines without a GPU, CI included.
// Include this, then cuda/kernels.cu itself: the same kernels and launchers compile with the host
// compiler. Each block runs as blockDim.x fibers on the calling thread, one block after another:
// a thread runs until it reaches a barrier (a warp shuffle, __syncwarp, __syncthreads) or ends, and
// a barrier opens once every thread of its warp or block that has not ended waits there. Fibers,
// not OS threads: a block of 256 OS threads meeting at barriers spends its time switching in the
// kernel. __shared__ variables are statics (one block at a time).
// What it cannot show: speed, memory coalescing, alignment faults, or races the hardware's warp
// scheduling would expose. Device pointers are host pointers here.
#define FI_CUDA_EMULATION 1
#define __launch_bounds__(...)

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define FI_EMULATION_ASAN 1
#endif

#undef __shared__
#define __shared__ static

inline uint3 threadIdx;
inline uint3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

namespace fi::cuda::emulation {

constexpr unsigned kWarpSize = 32;
#if defined(FI_EMULATION_ASAN)
constexpr size_t kStackBytes = size_t{1} << 20;  // ASan's redzones make frames several times larger
constexpr size_t kStackTopBytes = size_t{64} << 10;
#else
constexpr size_t kStackBytes = size_t{256} << 10;
#endif

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "cuda emulation: %s\n", what);
  std::abort();
}

// A fiber stack with a guard page below it, so an overflow faults instead of corrupting a neighbour.
class Stack {
 public:
  Stack() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    mapping_ = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapping_ == MAP_FAILED) fail("cannot map a fiber stack");
    if (mprotect(mapping_, page, PROT_NONE) != 0) fail("cannot protect a fiber stack's guard page");
    bottom_ = static_cast<char*>(mapping_) + page;
    bytes_ = kStackBytes + page;
  }
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
  ~Stack() { munmap(mapping_, bytes_); }
  void* bottom() const { return bottom_; }

 private:
  void* mapping_ = nullptr;
  void* bottom_ = nullptr;
  size_t bytes_ = 0;
};

enum class Waiting : uint8_t { kNo, kWarp, kBlock, kEnded };

struct Fiber {
  ucontext_t context{};
  Waiting waiting = Waiting::kNo;
  void* fake_stack = nullptr;  // ASan's bookkeeping while switched out
};

class Block {
 public:
  // Runs body once per thread of a block of `threads`, as blockIdx `block`.
  void run(unsigned block, unsigned threads, const std::function<void()>& body) {
    body_ = &body;
    while (stacks_.size() < threads) stacks_.push_back(std::make_unique<Stack>());
    fibers_.assign(threads, Fiber{});
    lanes_.assign((threads + kWarpSize - 1) / kWarpSize, {});
    for (unsigned t = 0; t < threads; ++t) {
      Fiber& fiber = fibers_[t];
      if (getcontext(&fiber.context) != 0) fail("getcontext failed");
      fiber.context.uc_stack.ss_sp = stacks_[t]->bottom();
      fiber.context.uc_stack.ss_size = kStackBytes;
      fiber.context.uc_link = nullptr;
#if defined(FI_EMULATION_ASAN)
      // A previous fiber's last frames (entry's, which never returns) lie at the top of the stack;
      // every frame below them was unpoisoned when its function returned.
      ASAN_UNPOISON_MEMORY_REGION(static_cast<char*>(stacks_[t]->bottom()) + kStackBytes - kStackTopBytes, kStackTopBytes);
#endif
      makecontext(&fiber.context, &Block::entry, 0);
      // The stack pointer is set; without a stack named here ASan's swapcontext does not clear the
      // whole stack's shadow at every switch (the annotations keep it right instead).
      fiber.context.uc_stack = {};
    }
    for (;;) {
      for (unsigned t = 0; t < threads; ++t)
        if (fibers_[t].waiting == Waiting::kNo) resume(block, t);
      if (!open_barriers(threads)) break;
    }
  }

  // Called on a fiber: wait at a barrier until open_barriers lets this thread go on.
  void wait(Waiting barrier) {
    Fiber& fiber = fibers_[current_];
    fiber.waiting = barrier;
    switch_to_scheduler(fiber, &fiber.fake_stack);
  }

  std::array<uint64_t, kWarpSize>& lanes(unsigned warp) { return lanes_[warp]; }

  // One for all launches: its fiber stacks are kept for the next block.
  static Block* current() {
    static Block block;
    return &block;
  }

 private:
  static void entry() {
    Block& self = *current();
#if defined(FI_EMULATION_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &self.scheduler_bottom_, &self.scheduler_size_);
#endif
    (*self.body_)();
    Fiber& fiber = self.fibers_[self.current_];
    fiber.waiting = Waiting::kEnded;
    self.switch_to_scheduler(fiber, nullptr);  // never resumed
  }

  void resume(unsigned block, unsigned t) {
    current_ = t;
    threadIdx = {t, 0, 0};
    blockIdx = {block, 0, 0};
#if defined(FI_EMULATION_ASAN)
    void* fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&fake_stack, stacks_[t]->bottom(), kStackBytes);
#endif
    if (swapcontext(&scheduler_, &fibers_[t].context) != 0) fail("swapcontext failed");
#if defined(FI_EMULATION_ASAN)
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
  }

  // A null fake_stack_save tells ASan the fiber is gone.
  void switch_to_scheduler(Fiber& fiber, void** fake_stack_save) {
#if defined(FI_EMULATION_ASAN)
    __sanitizer_start_switch_fiber(fake_stack_save, scheduler_bottom_, scheduler_size_);
#else
    (void)fake_stack_save;
#endif
    if (swapcontext(&fiber.context, &scheduler_) != 0) fail("swapcontext failed");
#if defined(FI_EMULATION_ASAN)
    __sanitizer_finish_switch_fiber(fiber.fake_stack, &scheduler_bottom_, &scheduler_size_);
#endif
  }

  // Every thread now waits or has ended. Opens the block's barrier or the warps' ones whose
  // remaining threads all wait there; false once every thread has ended.
  bool open_barriers(unsigned threads) {
    unsigned ended = 0, at_block = 0;
    for (const Fiber& fiber : fibers_) {
      ended += fiber.waiting == Waiting::kEnded;
      at_block += fiber.waiting == Waiting::kBlock;
    }
    if (ended == threads) return false;
    if (ended + at_block == threads) {
      for (Fiber& fiber : fibers_)
        if (fiber.waiting == Waiting::kBlock) fiber.waiting = Waiting::kNo;
      return true;
    }
    bool opened = false;
    for (unsigned first = 0; first < threads; first += kWarpSize) {
      const unsigned last = std::min(first + kWarpSize, threads);
      bool all_at_warp = true, any_at_warp = false;
      for (unsigned t = first; t < last; ++t) {
        const Waiting w = fibers_[t].waiting;
        all_at_warp = all_at_warp && (w == Waiting::kWarp || w == Waiting::kEnded);
        any_at_warp = any_at_warp || w == Waiting::kWarp;
      }
      if (!all_at_warp || !any_at_warp) continue;
      for (unsigned t = first; t < last; ++t)
        if (fibers_[t].waiting == Waiting::kWarp) fibers_[t].waiting = Waiting::kNo;
      opened = true;
    }
    if (!opened) fail("deadlock: threads of one warp wait at different barriers");
    return true;
  }

  const std::function<void()>* body_ = nullptr;
  std::vector<std::unique_ptr<Stack>> stacks_;  // kept across blocks and launches
  std::vector<Fiber> fibers_;
  std::vector<std::array<uint64_t, kWarpSize>> lanes_;  // shuffle exchange, one slot per lane
  ucontext_t scheduler_{};
  unsigned current_ = 0;
  const void* scheduler_bottom_ = nullptr;
  size_t scheduler_size_ = 0;
};

inline unsigned lane() { return threadIdx.x % kWarpSize; }
inline unsigned warp() { return threadIdx.x / kWarpSize; }

// Every lane publishes its value, then reads the one it asked for; the second barrier keeps a
// fast lane from overwriting its slot before the others have read it.
template <typename T>
T exchange(T value, unsigned source_lane) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffles move at most 64 bits");
  Block& block = *Block::current();
  auto& slots = block.lanes(warp());
  std::memcpy(&slots[lane()], &value, sizeof(T));
  block.wait(Waiting::kWarp);
  T result;
  std::memcpy(&result, &slots[source_lane % kWarpSize], sizeof(T));
  block.wait(Waiting::kWarp);
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
    const std::function<void()> body = [&] { kernel(args...); };
    for (unsigned b = 0; b < grid.x; ++b) Block::current()->run(b, block.x, body);
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
inline void __syncwarp() { fi::cuda::emulation::Block::current()->wait(fi::cuda::emulation::Waiting::kWarp); }
inline void __syncthreads() { fi::cuda::emulation::Block::current()->wait(fi::cuda::emulation::Waiting::kBlock); }
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
