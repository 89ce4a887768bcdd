#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "host/kernels/thread_pool.h"
#include "test_support.h"

namespace fi {
namespace {

TEST(ThreadPool, ParallelForVisitsEveryIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t count : {0, 1, 2, 7, 64, 1000}) {
      for (int64_t grain : {1, 3, 64}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(count));
        pool.parallel_for(count, grain, [&](int64_t begin, int64_t end) {
          ASSERT_LE(end - begin, grain);
          for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < count; ++i) ASSERT_EQ(hits[i].load(), 1) << threads << " " << count << " " << grain;
      }
    }
  }
}

TEST(ThreadPool, ContiguousParallelForVisitsEveryIndexOnceInWholeGrains) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t count : {0, 1, 2, 7, 64, 1000}) {
      for (int64_t grain : {1, 3, 4, 64}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(count));
        pool.parallel_for_contiguous(count, grain, [&](int64_t begin, int64_t end) {
          ASSERT_LE(end - begin, grain);
          ASSERT_EQ(begin % grain, 0);  // callers rely on whole grains (pairs of interleaved groups)
          for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < count; ++i) ASSERT_EQ(hits[i].load(), 1) << threads << " " << count << " " << grain;
      }
    }
  }
}

TEST(ThreadPool, ContiguousParallelForCoversAThreadThatFallsBehind) {
  // Whichever thread takes the chunk at 100 (the start of thread 1's range) stalls until the rest of
  // that range is done: only the other threads helping can finish it.
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(300);
  std::atomic<bool> covered{false};
  pool.parallel_for_contiguous(300, 10, [&](int64_t begin, int64_t end) {
    if (begin == 100) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      auto rest_done = [&] {
        for (int64_t i = 110; i < 200; ++i)
          if (hits[i].load() == 0) return false;
        return true;
      };
      while (!rest_done() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      covered = rest_done();
    }
    for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
  });
  EXPECT_TRUE(covered.load()) << "the rest of a stalled thread's range was left to it";
  for (auto& hit : hits) ASSERT_EQ(hit.load(), 1);
}

TEST(ThreadPool, RunCallsEveryThreadIndexOnce) {
  ThreadPool pool(4);
  for (int round = 0; round < 2000; ++round) {
    std::atomic<int> mask{0};
    pool.run([&](int index) { mask.fetch_or(1 << index); });
    ASSERT_EQ(mask.load(), 0xF);
  }
}

TEST(ThreadPool, SurvivesIdleGapsLongerThanTheSpin) {
  ThreadPool pool(2);
  for (int round = 0; round < 5; ++round) {
    std::atomic<int> sum{0};
    pool.parallel_for(100, 1, [&](int64_t begin, int64_t end) { sum += static_cast<int>(end - begin); });
    EXPECT_EQ(sum.load(), 100);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // workers go to sleep on the futex
  }
}

}  // namespace
}  // namespace fi
