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

 private:
  using ErasedTask = void (*)(const void*, int);
  void run_erased(ErasedTask task, const void* context);
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::atomic<uint32_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stopping_{false};
  ErasedTask task_ = nullptr;
  const void* context_ = nullptr;
};

// Threads to use by default: the cores this process may run on.
int default_thread_count();

}  // namespace fi
