#include "host/kernels/thread_pool.h"

#include <sched.h>

#include <immintrin.h>

namespace fi {

namespace {
// About 50-100 microseconds of spinning: longer than the gap between two matrix products of one
// token, much shorter than the gap between tokens.
constexpr int kSpinIterations = 1 << 14;

template <typename Predicate>
void spin_then_wait(const std::atomic<uint32_t>& word, uint32_t old_value, Predicate done) {
  for (int i = 0; i < kSpinIterations; ++i) {
    if (done()) return;
    _mm_pause();
  }
  while (!done()) word.wait(old_value, std::memory_order_acquire);
}
}  // namespace

int default_thread_count() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(int threads) : cursors_(static_cast<size_t>(std::max(threads, 1))) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stopping_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::run_erased(ErasedTask task, const void* context) {
  if (workers_.empty()) {
    task(context, 0);
    return;
  }
  task_ = task;
  context_ = context;
  pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  task(context, 0);
  // Workers signal completion through pending_; wait on it the same way they wait for work.
  for (int i = 0; i < kSpinIterations; ++i) {
    if (pending_.load(std::memory_order_acquire) == 0) return;
    _mm_pause();
  }
  for (;;) {
    const int left = pending_.load(std::memory_order_acquire);
    if (left == 0) return;
    pending_.wait(left, std::memory_order_acquire);
  }
}

void ThreadPool::worker_loop(int index) {
  uint32_t seen = 0;
  for (;;) {
    spin_then_wait(generation_, seen, [&] { return generation_.load(std::memory_order_acquire) != seen; });
    seen = generation_.load(std::memory_order_acquire);
    if (stopping_.load(std::memory_order_acquire)) return;
    task_(context_, index);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

}  // namespace fi
