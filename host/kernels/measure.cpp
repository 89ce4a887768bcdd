#include "host/kernels/measure.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <vector>

#include "host/memory/buffer.h"
#include "host/kernels/matmul.h"
#include "host/kernels/quant.h"
#include "host/kernels/repack.h"

namespace fi {

namespace {

template <typename Work>
double best_GBps(uint64_t bytes, int rounds, Work&& work) {
  double best = 0.0;
  for (int round = 0; round < rounds; ++round) {
    const auto start = std::chrono::steady_clock::now();
    work();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(bytes) / seconds / 1e9);
  }
  return best;
}

}  // namespace

double measure_memory_read_GBps(ThreadPool& pool, uint64_t bytes, int rounds) {
  const uint64_t words = bytes / sizeof(uint64_t);
  PageBuffer buffer(words * sizeof(uint64_t));
  auto* data = buffer.as<uint64_t>();
  pool.parallel_for(static_cast<int64_t>(words), 1 << 20, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) data[i] = static_cast<uint64_t>(i);
  });
  volatile uint64_t sink = 0;
  const double result = best_GBps(words * sizeof(uint64_t), rounds, [&] {
    std::atomic<uint64_t> total{0};
    pool.parallel_for(static_cast<int64_t>(words), 1 << 18, [&](int64_t begin, int64_t end) {
      total.fetch_add(sum_words(data + begin, end - begin), std::memory_order_relaxed);
    });
    sink = sink + total.load();
  });
  return result;
}

double measure_matvec_GBps(ThreadPool& pool, TensorType type, uint64_t bytes, int rounds) {
  const int64_t cols = 4096;
  const uint64_t row_bytes = fi::row_bytes(type, cols);
  const int64_t rows = std::max<int64_t>(8, static_cast<int64_t>(bytes / row_bytes) / 8 * 8);
  PageBuffer weights(row_bytes * static_cast<uint64_t>(rows));
  // Any valid blocks do: quantize one row of varied values and repeat it.
  std::vector<float> values(cols);
  for (int64_t i = 0; i < cols; ++i) values[i] = static_cast<float>((i * 37 % 101) - 50) / 50.0f;
  std::vector<uint8_t> row(row_bytes);
  quantize_row(type, values.data(), row.data(), cols);
  pool.parallel_for(rows, 256, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) std::memcpy(weights.as<uint8_t>() + r * row_bytes, row.data(), row_bytes);
  });
  WeightMatrix w{type, cols, rows, row_bytes, weights.as<uint8_t>()};
  if (can_interleave(w)) {
    interleave_rows(pool, type, cols, rows, weights.as<uint8_t>());
    w.interleaved = true;
  }
  std::vector<float> y(static_cast<size_t>(rows));
  QuantizedBatch batch;
  quantize_batch(pool, type, values.data(), cols, 1, batch);
  return best_GBps(row_bytes * static_cast<uint64_t>(rows), rounds, [&] { matmul(pool, w, batch, y.data()); });
}

}  // namespace fi
