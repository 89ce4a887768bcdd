#pragma once
// A persistent pool: the calling thread plus (threads - 1) workers that spin briefly and then sleep
// on a futex between jobs, so hundreds of parallel sections per token cost no thread creation.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace fi {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls task(thread_index) once on every thread (the caller is index 0) and waits for all.
  template <typename Task>
  void run(Task&& task) {
    run_erased([](const void* context, int index) { (*static_cast<const Task*>(context))(index); }, &task);
  }

  // Splits [0, count) into chunks of `grain` handed out dynamically; body(begin, end).
  template <typename Body>
  void parallel_for(int64_t count, int64_t grain, Body&& body) {
    if (count <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    if (size() == 1 || count <= grain) {
      for (int64_t begin = 0; begin < count; begin += grain) body(begin, std::min(count, begin + grain));
      return;
    }
    std::atomic<int64_t> next{0};
    run([&](int) {
      for (;;) {
        const int64_t begin = next.fetch_add(grain, std::memory_order_relaxed);
        if (begin >= count) break;
        body(begin, std::min(count, begin + grain));
      }
    });
  }

  // Splits [0, count) into one contiguous range per thread, each taken from its front in chunks of
  // `grain`; a thread done with its own range then helps with the others'. Each thread streams
  // consecutive memory, which its prefetches follow, and a thread that falls behind is still
  // covered. body(begin, end); range boundaries fall on multiples of `grain`.
  template <typename Body>
  void parallel_for_contiguous(int64_t count, int64_t grain, Body&& body) {
    if (count <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    const int threads = size();
    if (threads == 1 || count <= grain) {
      for (int64_t begin = 0; begin < count; begin += grain) body(begin, std::min(count, begin + grain));
      return;
    }
    const int64_t chunks = (count + grain - 1) / grain;
    auto range_begin = [&](int owner) { return std::min(count, chunks * owner / threads * grain); };
    for (int i = 0; i < threads; ++i) cursors_[static_cast<size_t>(i)].next.store(range_begin(i), std::memory_order_relaxed);
    run([&](int index) {
      for (int k = 0; k < threads; ++k) {
        const int owner = (index + k) % threads;
        const int64_t end = range_begin(owner + 1);
        std::atomic<int64_t>& cursor = cursors_[static_cast<size_t>(owner)].next;
        for (;;) {
          const int64_t begin = cursor.fetch_add(grain, std::memory_order_relaxed);
          if (begin >= end) break;
          body(begin, std::min(end, begin + grain));
        }
      }
    });
  }

 private:
  // One thread's place in its range, alone on its cache line.
  struct alignas(64) Cursor {
    std::atomic<int64_t> next{0};
  };
  using ErasedTask = void (*)(const void*, int);
  void run_erased(ErasedTask task, const void* context);
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::atomic<uint32_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stopping_{false};
  std::vector<Cursor> cursors_;
  ErasedTask task_ = nullptr;
  const void* context_ = nullptr;
};

// Threads to use by default: the cores this process may run on.
int default_thread_count();

}  // namespace fi
