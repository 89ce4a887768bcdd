// Micro-benchmarks of the CPU matrix-vector kernels: bytes of weights streamed per second, per
// type and thread count. `bench_kernels --benchmark_format=json` for machine-readable output.
#include <benchmark/benchmark.h>

#include <immintrin.h>

#include <cstring>
#include <random>
#include <string>
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
  const int64_t rows = (int64_t{2} << 30) / static_cast<int64_t>(fi::row_bytes(type, cols)) / 64 * 64;
  const int threads = static_cast<int>(state.range(0));
  const uint64_t row_bytes = fi::row_bytes(type, cols);
  fi::PageBuffer weights(row_bytes * rows);
  // 64 distinct random rows repeated: the numbers depend on the bytes streamed, not on their values,
  // and quantizing 2 GiB of rows would take minutes.
  const int64_t distinct = 64;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> row(cols);
  std::vector<uint8_t> pattern(row_bytes * distinct);
  for (int64_t r = 0; r < distinct; ++r) {
    for (float& v : row) v = normal(rng);
    fi::quantize_row(type, row.data(), pattern.data() + r * row_bytes, cols);
  }
  fi::ThreadPool pool(threads);
  pool.parallel_for(rows / distinct, 1, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk)
      std::memcpy(weights.as<uint8_t>() + chunk * distinct * row_bytes, pattern.data(), pattern.size());
  });
  std::vector<float> x(cols), y(rows);
  for (float& v : x) v = normal(rng);
  fi::QuantizedBatch batch;
  fi::WeightMatrix w{type, cols, rows, row_bytes, weights.as<uint8_t>()};
  if (fi::can_interleave(w)) {  // as the engine does
    fi::interleave_rows(pool, type, cols, rows, weights.as<uint8_t>());
    w.interleaved = true;
  }
  for (auto _ : state) {
    fi::quantize_batch(pool, type, x.data(), cols, 1, batch);
    fi::matmul(pool, w, batch, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(row_bytes * rows));
}

// A 4096 x 4096 matrix (in cache, as in prefill where each row is reused for every token) against
// a 128-token batch: the compute rate of the batched products. Items are multiply-adds.
void prefill(benchmark::State& state, TensorType type) {
  const int64_t cols = 4096, rows = 4096, tokens = 128;
  const int threads = static_cast<int>(state.range(0));
  const uint64_t row_bytes = fi::row_bytes(type, cols);
  std::vector<uint8_t> weights(row_bytes * rows);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  std::vector<float> values(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : values) v = normal(rng);
    fi::quantize_row(type, values.data(), weights.data() + r * row_bytes, cols);
  }
  std::vector<float> x(cols * tokens), y(rows * tokens);
  for (float& v : x) v = normal(rng);
  fi::ThreadPool pool(threads);
  fi::WeightMatrix w{type, cols, rows, row_bytes, weights.data()};
  if (fi::can_interleave(w)) fi::interleave_rows(w, weights.data());
  fi::QuantizedBatch batch;
  for (auto _ : state) {
    fi::quantize_batch(pool, type, x.data(), cols, tokens, batch);
    fi::matmul(pool, w, batch, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * rows * cols * tokens);
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

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("memory_read", memory_read)->Arg(1)->Arg(2)->UseRealTime();
  for (const TensorType type : fi::kTensorTypes)
    if (type != TensorType::F32)
      benchmark::RegisterBenchmark((std::string("matvec/") + fi::type_name(type)).c_str(), matvec, type)
          ->Arg(1)
          ->Arg(2)
          ->UseRealTime();
  for (const TensorType type : fi::kTensorTypes)
    if (type != TensorType::F32)
      benchmark::RegisterBenchmark((std::string("prefill/") + fi::type_name(type)).c_str(), prefill, type)
          ->Arg(1)
          ->Arg(2)
          ->UseRealTime();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
