// Micro-benchmarks of the CPU matrix-vector kernels: bytes of weights streamed per second, per
// type and thread count. `bench_kernels --benchmark_format=json` for machine-readable output.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "host/buffer.h"
#include "host/matmul.h"
#include "host/quant.h"

namespace {

using fi::TensorType;

// A 4096 x 11008 matrix (a Llama-2-7B FFN projection): 25-90 MB, far larger than the caches.
void matvec(benchmark::State& state, TensorType type) {
  const int64_t cols = 4096, rows = 11008;
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
  const fi::WeightMatrix w{type, cols, rows, row_bytes, weights.as<uint8_t>()};
  for (auto _ : state) {
    fi::quantize_batch(pool, type, x.data(), cols, 1, batch);
    fi::matmul(pool, w, batch, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(row_bytes * rows));
}

}  // namespace

BENCHMARK_CAPTURE(matvec, F16, TensorType::F16)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(matvec, Q8_0, TensorType::Q8_0)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(matvec, Q4_0, TensorType::Q4_0)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(matvec, Q4_K, TensorType::Q4_K)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(matvec, Q5_K, TensorType::Q5_K)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(matvec, Q6_K, TensorType::Q6_K)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_MAIN();
