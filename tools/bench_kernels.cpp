// Micro-benchmarks of the CPU matrix-vector kernels: bytes of weights streamed per second, per
// type and thread count. `bench_kernels --benchmark_format=json` for machine-readable output.
#include <benchmark/benchmark.h>

#include <immintrin.h>

#include <cstring>
#include <random>
#include <vector>

#include "host/memory/buffer.h"
#include "host/kernels/matmul.h"
#include "host/kernels/quant.h"
#include "host/kernels/repack.h"

namespace {

using fi::TensorType;

// Rows of 4096 (Llama-2-7B) totalling 2 GiB of weights: far beyond the last-level cache (300 MiB
// on the development machine), so the numbers are DRAM numbers like a real model's.
void matvec(benchmark::State& state, TensorType type) {
  const int64_t cols = 4096;
  const int64_t rows = (int64_t{2} << 30) / static_cast<int64_t>(fi::row_bytes(type, cols)) / 8 * 8;
  const int threads = static_cast<int>(state.range(0));
  const uint64_t row_bytes = fi::row_bytes(type, cols);
  fi::PageBuffer weights(row_bytes * rows);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> row(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : row) v = normal(rng);
    fi::quantize_row(type, row.data(), weights.as<uint8_t>() + r * row_bytes, cols);
  }
  std::vector<float> x(cols), y(rows);
  for (float& v : x) v = normal(rng);
  fi::ThreadPool pool(threads);
  fi::QuantizedBatch batch;
  fi::WeightMatrix w{type, cols, rows, row_bytes, weights.as<uint8_t>()};
  if (fi::can_interleave(w)) fi::interleave_rows(w, weights.as<uint8_t>());  // as the engine does
  for (auto _ : state) {
    fi::quantize_batch(pool, type, x.data(), cols, 1, batch);
    fi::matmul(pool, w, batch, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(row_bytes * rows));
}

// Plain streaming read of 2 GiB with AVX2 loads on each thread: the memory bandwidth the decode
// speed is compared with.
void memory_read(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const size_t bytes = size_t{2} << 30;
  fi::PageBuffer buffer(bytes);
  std::memset(buffer.data(), 1, bytes);
  fi::ThreadPool pool(threads);
  const int64_t chunks = 256;
  for (auto _ : state) {
    std::vector<float> partial(static_cast<size_t>(chunks));
    pool.parallel_for(chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        const auto* p = reinterpret_cast<const __m256*>(buffer.as<uint8_t>() + c * (bytes / chunks));
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t i = 0; i < bytes / chunks / 32; i += 4) {
          a0 = _mm256_add_ps(a0, p[i]);
          a1 = _mm256_add_ps(a1, p[i + 1]);
          a2 = _mm256_add_ps(a2, p[i + 2]);
          a3 = _mm256_add_ps(a3, p[i + 3]);
        }
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        partial[c] = lanes[0];
      }
    });
    benchmark::DoNotOptimize(partial.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(bytes));
}

}  // namespace

BENCHMARK(memory_read)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(matvec, F16, TensorType::F16)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(matvec, Q8_0, TensorType::Q8_0)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(matvec, Q4_0, TensorType::Q4_0)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(matvec, Q4_K, TensorType::Q4_K)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(matvec, Q5_K, TensorType::Q5_K)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(matvec, Q6_K, TensorType::Q6_K)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_MAIN();
