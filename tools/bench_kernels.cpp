// Micro-benchmarks of the CPU matrix-vector kernels: bytes of weights streamed per second, per
// type and thread count. `bench_kernels --benchmark_format=json` for machine-readable output.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "host/memory/buffer.h"
#include "host/kernels/fp16.h"
#include "host/kernels/matmul.h"
#include "host/kernels/quant.h"
#include "host/kernels/repack.h"

namespace {

using fi::TensorType;

// Rows of `cols` totalling `bytes_per_thread` times the threads. matvec's 1 GiB per thread is far
// beyond the last-level cache (300 MiB on the development machine), so its numbers are DRAM numbers
// like a real model's; matvec_in_cache's 1 MiB per thread stays in the caches, so its numbers are
// the kernel's arithmetic rate, the ceiling it would stream at from any memory. matvec_plain leaves
// the rows as the file has them, computed one row at a time (as a tied output head is, and K-quant
// experts arriving in decode). matvec_768 has the short rows of Qwen3-30B-A3B's expert down
// projections; matvec_tokens computes 1 to 4 tokens at once (the second argument).
void matvec(benchmark::State& state, TensorType type, int64_t bytes_per_thread, bool interleave, int64_t cols,
            bool several_tokens) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t tokens = several_tokens ? state.range(1) : 1;
  const int64_t rows =
      std::max<int64_t>(64, bytes_per_thread * threads / static_cast<int64_t>(fi::row_bytes(type, cols)) / 64 * 64);
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
  std::vector<float> x(cols * tokens), y(rows * tokens);
  for (float& v : x) v = normal(rng);
  fi::QuantizedBatch batch;
  fi::WeightMatrix w{type, cols, rows, row_bytes, weights.as<uint8_t>()};
  if (interleave && fi::can_interleave(w)) {  // as the engine does at load
    fi::interleave_rows(pool, type, cols, rows, weights.as<uint8_t>());
    w.interleaved = true;
  }
  for (auto _ : state) {
    fi::quantize_batch(pool, type, x.data(), cols, tokens, batch);
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

// One decode token through the experts of a mixture-of-experts layer, as the CPU backend computes
// them: eight experts of qwen3-30b-a3b's shape (gate and up 768 x 2048, down 2048 x 768; in a
// Q4_K_M file gate and up Q4_K, down Q6_K, 3 MiB each) picked at random from 2 GiB of them, each
// with its own input quantization, gate, up, SwiGLU and down. Bytes are the experts' weights; the
// gap to matvec is what small matrices cost.
// `experts` computes them interleaved (as resident experts are), `experts_plain` as the file has
// them (as experts read into the expert cache in decode are on their first use).
void experts(benchmark::State& state, TensorType up_type, TensorType down_type, bool interleave) {
  const int64_t dim = 2048, width = 768, chosen = 8;
  const uint64_t up_bytes = fi::row_bytes(up_type, dim) * width, down_bytes = fi::row_bytes(down_type, width) * dim;
  const uint64_t expert_bytes = 2 * up_bytes + down_bytes;
  const int64_t count = static_cast<int64_t>((uint64_t{2} << 30) / expert_bytes);
  const int threads = static_cast<int>(state.range(0));
  fi::ThreadPool pool(threads);
  fi::PageBuffer weights(expert_bytes * count);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  // One quantized expert copied everywhere: the numbers depend on the bytes streamed, not their values.
  std::vector<uint8_t> pattern(expert_bytes);
  std::vector<float> values(static_cast<size_t>(dim));
  for (int64_t r = 0; r < 2 * width; ++r) {
    for (float& v : values) v = normal(rng);
    fi::quantize_row(up_type, values.data(), pattern.data() + r * fi::row_bytes(up_type, dim), dim);
  }
  for (int64_t r = 0; r < dim; ++r) {
    for (int64_t i = 0; i < width; ++i) values[i] = normal(rng);
    fi::quantize_row(down_type, values.data(), pattern.data() + 2 * up_bytes + r * fi::row_bytes(down_type, width),
                     width);
  }
  if (interleave) {
    fi::interleave_rows(pool, up_type, dim, 2 * width, pattern.data());
    fi::interleave_rows(pool, down_type, width, dim, pattern.data() + 2 * up_bytes);
  }
  pool.parallel_for(count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e)
      std::memcpy(weights.as<uint8_t>() + e * expert_bytes, pattern.data(), expert_bytes);
  });
  auto matrix = [&](int64_t expert, int part) {
    uint8_t* base = weights.as<uint8_t>() + expert * expert_bytes;
    fi::WeightMatrix w{up_type, dim, width, fi::row_bytes(up_type, dim), base + part * up_bytes};
    if (part == 2) w = {down_type, width, dim, fi::row_bytes(down_type, width), base + 2 * up_bytes};
    w.interleaved = interleave;
    w.as_interleaved = !interleave;  // as the expert cache's slots
    return w;
  };
  std::vector<float> x(dim), gate(width), up(width), y(dim);
  for (float& v : x) v = normal(rng);
  std::uniform_int_distribution<int64_t> pick(0, count - 1);
  fi::QuantizedBatch batch;
  for (auto _ : state) {
    for (int64_t i = 0; i < chosen; ++i) {
      const int64_t e = pick(rng);
      fi::quantize_batch(pool, up_type, x.data(), dim, 1, batch);
      const fi::WeightMatrix gate_matrix = matrix(e, 0), up_matrix = matrix(e, 1);
      const fi::MatrixProduct gate_and_up[] = {{&gate_matrix, gate.data()}, {&up_matrix, up.data()}};
      fi::matmul(pool, gate_and_up, batch);
      for (int64_t r = 0; r < width; ++r) gate[r] = gate[r] / (1.0f + std::exp(-gate[r])) * up[r];
      fi::quantize_batch(pool, down_type, gate.data(), width, 1, batch);
      fi::matmul(pool, matrix(e, 2), batch, y.data());
      benchmark::DoNotOptimize(y.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(chosen * expert_bytes));
}

// Experts re-arranged for the interleaved kernels, as the expert cache does when an expert read
// from the disk is used a second time, or at once when a prompt's tokens use it: qwen3-30b-a3b's
// shape (gate and up 768 x 2048, down 2048 x 768), cycling over 512 MiB of them so that each
// arrives from DRAM, not the cache. Bytes are the experts'; compare with "experts", which computes
// the same bytes.
void interleave_experts(benchmark::State& state, TensorType up_type, TensorType down_type) {
  const int64_t dim = 2048, width = 768;
  if (!fi::interleaves(up_type) || !fi::interleaves(down_type)) {
    state.SkipWithError("these kernels do not interleave rows");
    return;
  }
  const uint64_t up_bytes = fi::row_bytes(up_type, dim) * width, down_bytes = fi::row_bytes(down_type, width) * dim;
  const uint64_t expert_bytes = 2 * up_bytes + down_bytes;
  const int64_t count = static_cast<int64_t>((uint64_t{512} << 20) / expert_bytes);
  fi::ThreadPool pool(static_cast<int>(state.range(0)));
  fi::PageBuffer experts(expert_bytes * count);
  std::memset(experts.data(), 0x5a, expert_bytes * count);  // the cost does not depend on the values
  int64_t next = 0;
  for (auto _ : state) {
    uint8_t* base = experts.as<uint8_t>() + next * expert_bytes;
    fi::interleave_rows(pool, up_type, dim, 2 * width, base);
    fi::interleave_rows(pool, down_type, width, dim, base + 2 * up_bytes);
    next = (next + 1) % count;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(expert_bytes));
}

// One decoded token's attention over one layer's half-precision cache of `context` positions, in
// qwen3-30b-a3b's shape (32 query heads sharing 4 KV heads of 128), on one thread: the score and
// value kernels as each of the backend's tasks calls them (softmax apart). Bytes are the cached
// keys and values read.
void attention(benchmark::State& state) {
  const int64_t context = state.range(0), head_dim = 128, kv_heads = 4, group = 8, kv_dim = kv_heads * head_dim;
  std::mt19937 rng(4);
  std::normal_distribution<float> normal;
  std::vector<uint16_t> keys(static_cast<size_t>(context * kv_dim)), values(keys.size());
  for (uint16_t& k : keys) k = fi::fp32_to_fp16(normal(rng));
  for (uint16_t& v : values) v = fi::fp32_to_fp16(normal(rng));
  std::vector<float> queries(static_cast<size_t>(group * kv_dim)), out(queries.size());
  std::vector<float> scores(static_cast<size_t>(group * context), 1.0f / static_cast<float>(context));
  for (float& q : queries) q = normal(rng);
  for (auto _ : state) {
    for (int64_t h = 0; h < kv_heads; ++h) {
      fi::attention_scores_f16(head_dim, keys.data() + h * head_dim, kv_dim, context, &queries[h * group * head_dim],
                               head_dim, group, scores.data(), context);
      fi::attention_values_f16(head_dim, values.data() + h * head_dim, kv_dim, context, scores.data(), context, group,
                               &out[h * group * head_dim], head_dim);
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 2 * context * kv_dim * 2);
}

// Plain streaming read of 2 GiB on each thread, as `probe` measures it (fi::sum_words): the memory
// bandwidth the decode speed is compared with.
void memory_read(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const size_t bytes = size_t{2} << 30;
  fi::PageBuffer buffer(bytes);
  std::memset(buffer.data(), 1, bytes);
  fi::ThreadPool pool(threads);
  const int64_t chunks = 256;
  for (auto _ : state) {
    std::vector<uint64_t> partial(static_cast<size_t>(chunks));
    pool.parallel_for(chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c)
        partial[c] = fi::sum_words(reinterpret_cast<const uint64_t*>(buffer.as<uint8_t>() + c * (bytes / chunks)),
                                   static_cast<int64_t>(bytes / chunks / sizeof(uint64_t)));
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
      for (const auto& [name, bytes_per_thread, interleave, cols] :
           {std::tuple{"matvec/", int64_t{1} << 30, true, int64_t{4096}},
            std::tuple{"matvec_in_cache/", int64_t{1} << 20, true, int64_t{4096}},
            std::tuple{"matvec_plain/", int64_t{1} << 30, false, int64_t{4096}},
            std::tuple{"matvec_768/", int64_t{1} << 30, true, int64_t{768}}})
        benchmark::RegisterBenchmark((std::string(name) + fi::type_name(type)).c_str(), matvec, type, bytes_per_thread,
                                     interleave, cols, false)
            ->Arg(1)
            ->Arg(2)
            ->UseRealTime();
  for (const TensorType type : fi::kTensorTypes)
    if (type != TensorType::F32)
      benchmark::RegisterBenchmark((std::string("matvec_tokens/") + fi::type_name(type)).c_str(), matvec, type,
                                   int64_t{1} << 30, true, int64_t{4096}, true)
          ->ArgsProduct({{1, 2}, {1, 2, 3, 4}})
          ->UseRealTime();
  // Each file type's experts: Q4_K_M's mix, and the files whose experts are all of one type.
  for (const auto& [suffix, up_type, down_type] :
       {std::tuple{"", TensorType::Q4_K, TensorType::Q6_K}, std::tuple{"/Q8_0", TensorType::Q8_0, TensorType::Q8_0},
        std::tuple{"/Q4_0", TensorType::Q4_0, TensorType::Q4_0}}) {
    benchmark::RegisterBenchmark((std::string("experts") + suffix).c_str(), experts, up_type, down_type, true)
        ->Arg(1)
        ->Arg(2)
        ->UseRealTime();
    benchmark::RegisterBenchmark((std::string("experts_plain") + suffix).c_str(), experts, up_type, down_type, false)
        ->Arg(1)
        ->Arg(2)
        ->UseRealTime();
    benchmark::RegisterBenchmark((std::string("interleave_experts") + suffix).c_str(), interleave_experts, up_type,
                                 down_type)
        ->Arg(1)
        ->Arg(2)
        ->UseRealTime();
  }
  for (const TensorType type : fi::kTensorTypes)
    if (type != TensorType::F32)
      benchmark::RegisterBenchmark((std::string("prefill/") + fi::type_name(type)).c_str(), prefill, type)
          ->Arg(1)
          ->Arg(2)
          ->UseRealTime();
  benchmark::RegisterBenchmark("attention", attention)->Arg(512)->Arg(4096)->Arg(32768)->UseRealTime();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
