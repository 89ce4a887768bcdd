#pragma once
// The GPU kernels against scalar references on random data, written once for two runners: the
// device (test_gpu, real memory and streams) and the CPU emulation of the execution model
// (test_kernels_emulated, where device memory is host memory). `Memory` provides
// upload(vector) -> T*, zeros<T>(count) -> T*, download(T*, count) -> vector and stream().
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "cuda/kernels.h"
#include "host/kernels/fp16.h"
#include "host/kernels/quant.h"
#include "host/kernels/repack.h"
#include "host/kernels/thread_pool.h"
#include "random_blocks.h"

namespace fi::test {

inline std::vector<float> random_floats(size_t count, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(count);
  for (float& v : values) v = normal(rng);
  return values;
}

struct RandomMatrix {
  std::vector<uint8_t> bytes;
  std::vector<float> dequantized;  // rows x cols
  uint64_t row_bytes;
};

inline RandomMatrix random_matrix(TensorType type, int64_t rows, int64_t cols, uint32_t seed) {
  RandomMatrix m;
  m.row_bytes = row_bytes(type, static_cast<uint64_t>(cols));
  m.bytes.resize(m.row_bytes * static_cast<uint64_t>(rows));
  m.dequantized.resize(static_cast<size_t>(rows * cols));
  const std::vector<float> values = random_floats(static_cast<size_t>(rows * cols), seed);
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row(type, &values[static_cast<size_t>(r * cols)], &m.bytes[r * m.row_bytes], cols);
    dequantize_row(type, &m.bytes[r * m.row_bytes], &m.dequantized[static_cast<size_t>(r * cols)], cols);
  }
  return m;
}

// The same from arbitrary block bytes (every scale, min and code pattern; sane fp16 scales).
inline RandomMatrix random_block_matrix(TensorType type, int64_t rows, int64_t cols, uint32_t seed) {
  RandomMatrix m;
  m.row_bytes = row_bytes(type, static_cast<uint64_t>(cols));
  m.bytes = random_block_bytes(type, cols, rows, seed);
  m.dequantized.resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    dequantize_row(type, &m.bytes[r * m.row_bytes], &m.dequantized[static_cast<size_t>(r * cols)], cols);
  return m;
}

inline const auto kAllKernelTypes = ::testing::ValuesIn(kTensorTypes);
inline std::string type_test_name(const ::testing::TestParamInfo<TensorType>& info) { return type_name(info.param); }

// Row r of w times token t of x in float64, and the sum of the products' magnitudes (the scale of
// the rounding a float computation of it may show).
struct Product {
  double value = 0.0, magnitude = 0.0;
};
inline Product reference_product(const RandomMatrix& w, const std::vector<float>& x, int64_t cols, int64_t r, int64_t t) {
  Product p;
  for (int64_t k = 0; k < cols; ++k) {
    const double product = static_cast<double>(w.dequantized[r * cols + k]) * x[t * cols + k];
    p.value += product;
    p.magnitude += std::fabs(product);
  }
  return p;
}

// The same matrix with rows [split_row, rows) moved to a separate allocation.
template <typename Memory>
cuda::DeviceMatrix split_copy(Memory& memory, const RandomMatrix& w, cuda::DeviceMatrix matrix, int64_t split_row) {
  const std::vector<uint8_t> tail(w.bytes.begin() + static_cast<ptrdiff_t>(split_row * w.row_bytes), w.bytes.end());
  matrix.tail = memory.upload(tail);
  matrix.split_row = split_row;
  return matrix;
}

// Matrix-vector products for 1, 3 and 8 tokens, rows not a multiple of the rows per block, float
// rows with a partial last group. Tolerance: float accumulation in another order than the
// float64 reference, relative to sum |w x| (the scale of the rounding): 1e-5.
template <typename Memory>
void check_matvec(TensorType type) {
  const int64_t rows = 67;
  for (const int64_t cols : is_float_type(type) ? std::vector<int64_t>{512, 300} : std::vector<int64_t>{512, 2048}) {
    const RandomMatrix w = random_matrix(type, rows, cols, 11);
    Memory memory;
    const cuda::DeviceMatrix matrix{type, rows, cols, w.row_bytes, memory.upload(w.bytes)};
    std::vector<float> alone;  // the first token's products when it is the only one
    for (const int64_t tokens : {1, 3, 8}) {
      const std::vector<float> x = random_floats(static_cast<size_t>(tokens * cols), 5);
      float* y = memory.template zeros<float>(static_cast<size_t>(tokens * rows));
      cuda::matvec(matrix, memory.upload(x), tokens, y, memory.stream());
      const std::vector<float> got = memory.download(y, static_cast<size_t>(tokens * rows));
      // The same token gives the same bits alone and in a batch (x's first token is the same).
      if (tokens == 1) alone = got;
      for (int64_t r = 0; r < rows; ++r)
        ASSERT_EQ(got[r], alone[r]) << type_name(type) << " cols " << cols << " row " << r << ": token 0 of " << tokens
                                    << " against alone";
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t r = 0; r < rows; ++r) {
          const Product expected = reference_product(w, x, cols, r, t);
          ASSERT_NEAR(got[t * rows + r], expected.value, 1e-5 * expected.magnitude + 1e-6)
              << type_name(type) << " cols " << cols << " tokens " << tokens << " row " << r;
        }
      // Accumulating into y adds the same products to what is there.
      cuda::matvec(matrix, memory.upload(x), tokens, y, memory.stream(), true);
      const std::vector<float> doubled = memory.download(y, static_cast<size_t>(tokens * rows));
      for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(doubled[i], got[i] + got[i]) << "accumulated output " << i;
      // Rows split between two places (resident rows and a staging slot) give the same bits.
      cuda::matvec(split_copy(memory, w, matrix, 24), memory.upload(x), tokens, y, memory.stream());
      const std::vector<float> split = memory.download(y, static_cast<size_t>(tokens * rows));
      for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(split[i], got[i]) << "output " << i << " of a split matrix";
    }
  }
}

// Arbitrary block bytes through matvec (1 and 8 tokens) and dequantize_to_half: within matvec's
// tolerance of the float64 product of dequantize_row's values, and exactly their half rounding.
template <typename Memory>
void check_arbitrary_blocks(TensorType type) {
  const int64_t rows = 19, cols = 512;
  const RandomMatrix w = random_block_matrix(type, rows, cols, 23);
  Memory memory;
  const cuda::DeviceMatrix matrix{type, rows, cols, w.row_bytes, memory.upload(w.bytes)};
  for (const int64_t tokens : {1, 8}) {
    const std::vector<float> x = random_floats(static_cast<size_t>(tokens * cols), 29);
    float* y = memory.template zeros<float>(static_cast<size_t>(tokens * rows));
    cuda::matvec(matrix, memory.upload(x), tokens, y, memory.stream());
    const std::vector<float> got = memory.download(y, static_cast<size_t>(tokens * rows));
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        const Product expected = reference_product(w, x, cols, r, t);
        ASSERT_NEAR(got[t * rows + r], expected.value, 1e-5 * expected.magnitude + 1e-6)
            << type_name(type) << " tokens " << tokens << " row " << r;
      }
  }
  auto* half_rows = memory.template zeros<uint16_t>(static_cast<size_t>(rows * cols));
  cuda::dequantize_to_half(matrix, 0, rows, half_rows, memory.stream());
  const std::vector<uint16_t> halves = memory.download(half_rows, static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i)
    ASSERT_EQ(halves[i], fp32_to_fp16(w.dequantized[i])) << type_name(type) << " element " << i;
}

// Rows of a matrix as halves (the prefill path's input to cuBLAS), from an offset row: exactly the
// half rounding of dequantize_row. Inputs to half: exactly fp32_to_fp16.
template <typename Memory>
void check_dequantize_to_half(TensorType type) {
  const int64_t rows = 40, cols = is_float_type(type) ? 300 : 512, first = 7, count = 30;
  const RandomMatrix w = random_matrix(type, rows, cols, 13);
  Memory memory;
  const cuda::DeviceMatrix matrix{type, rows, cols, w.row_bytes, memory.upload(w.bytes)};
  auto* half_rows = memory.template zeros<uint16_t>(static_cast<size_t>(count * cols));
  cuda::dequantize_to_half(matrix, first, count, half_rows, memory.stream());
  const std::vector<uint16_t> got = memory.download(half_rows, static_cast<size_t>(count * cols));
  for (int64_t i = 0; i < count * cols; ++i)
    ASSERT_EQ(got[i], fp32_to_fp16(w.dequantized[first * cols + i])) << type_name(type) << " element " << i;
  cuda::dequantize_to_half(split_copy(memory, w, matrix, 16), first, count, half_rows, memory.stream());
  EXPECT_EQ(memory.download(half_rows, static_cast<size_t>(count * cols)), got) << "a split matrix";

  std::vector<float> x = random_floats(1000, 17, 100.0f);
  // Past half's range (kHalfMax, 65504; 65520 and up round to infinity): saturated, not infinite.
  const std::vector<float> huge = {cuda::kHalfMax, -cuda::kHalfMax, 65519.0f, 65520.0f, -70000.0f, 3.0e38f};
  x.insert(x.end(), huge.begin(), huge.end());
  auto* half_x = memory.template zeros<uint16_t>(x.size());
  cuda::floats_to_half(memory.upload(x), static_cast<int64_t>(x.size()), half_x, memory.stream());
  const std::vector<uint16_t> converted = memory.download(half_x, x.size());
  for (size_t i = 0; i < x.size(); ++i)
    ASSERT_EQ(converted[i], fp32_to_fp16(std::clamp(x[i], -cuda::kHalfMax, cuda::kHalfMax))) << "input " << i << " = " << x[i];
  constexpr uint16_t kLargestHalf = 0x7BFF, kSign = 0x8000;
  const size_t first_huge = x.size() - huge.size();
  EXPECT_EQ(converted[first_huge + 3], kLargestHalf) << "65520 saturates";
  EXPECT_EQ(converted[first_huge + 4], kLargestHalf | kSign) << "-70000 saturates";
}

template <typename Memory>
void check_embed(TensorType type) {
  const int64_t rows = 50, cols = is_float_type(type) ? 300 : 512;
  const RandomMatrix table = random_matrix(type, rows, cols, 19);
  Memory memory;
  const cuda::DeviceMatrix matrix{type, rows, cols, table.row_bytes, memory.upload(table.bytes)};
  const std::vector<int32_t> tokens = {7, 0, 49, 7};
  float* out = memory.template zeros<float>(tokens.size() * static_cast<size_t>(cols));
  cuda::embed(matrix, memory.upload(tokens), static_cast<int64_t>(tokens.size()), out, memory.stream());
  const std::vector<float> got = memory.download(out, tokens.size() * static_cast<size_t>(cols));
  for (size_t t = 0; t < tokens.size(); ++t)
    for (int64_t k = 0; k < cols; ++k)
      ASSERT_EQ(got[t * cols + k], table.dequantized[tokens[t] * cols + k]) << "token " << t << " element " << k;
}

// RMSNorm (relative 1e-5: the scale is computed in double on both sides) and SwiGLU (relative
// 1e-5: expf against exp).
template <typename Memory>
void check_norm_and_swiglu() {
  const int64_t tokens = 3, dim = 1000;
  const std::vector<float> x = random_floats(static_cast<size_t>(tokens * dim), 23, 3.0f);
  const std::vector<float> weight = random_floats(static_cast<size_t>(dim), 29);
  Memory memory;
  float* normed = memory.template zeros<float>(x.size());
  cuda::rms_norm(memory.upload(x), memory.upload(weight), normed, tokens, dim, 1e-5, memory.stream());
  const std::vector<float> got = memory.download(normed, x.size());
  for (int64_t t = 0; t < tokens; ++t) {
    double squares = 0.0;
    for (int64_t i = 0; i < dim; ++i) squares += static_cast<double>(x[t * dim + i]) * x[t * dim + i];
    const double scale = 1.0 / std::sqrt(squares / static_cast<double>(dim) + 1e-5);
    for (int64_t i = 0; i < dim; ++i) {
      const double expected = x[t * dim + i] * scale * weight[i];
      ASSERT_NEAR(got[t * dim + i], expected, 1e-5 * std::fabs(expected) + 1e-7) << "token " << t << " element " << i;
    }
  }

  // In place, per head of 100 (Q/K norm): the same formula over each head's elements.
  const std::vector<float> head_weight = random_floats(100, 37);
  float* heads = memory.upload(x);
  cuda::rms_norm(heads, memory.upload(head_weight), heads, tokens * dim / 100, 100, 1e-6, memory.stream());
  const std::vector<float> normed_heads = memory.download(heads, x.size());
  for (int64_t h = 0; h < tokens * dim / 100; ++h) {
    double squares = 0.0;
    for (int64_t i = 0; i < 100; ++i) squares += static_cast<double>(x[h * 100 + i]) * x[h * 100 + i];
    const double scale = 1.0 / std::sqrt(squares / 100.0 + 1e-6);
    for (int64_t i = 0; i < 100; ++i) {
      const double expected = x[h * 100 + i] * scale * head_weight[i];
      ASSERT_NEAR(normed_heads[h * 100 + i], expected, 1e-5 * std::fabs(expected) + 1e-7) << "head " << h << " element " << i;
    }
  }

  const std::vector<float> bias = random_floats(static_cast<size_t>(dim), 41);
  float* biased = memory.upload(x);
  cuda::add_bias(biased, memory.upload(bias), tokens, dim, memory.stream());
  const std::vector<float> with_bias = memory.download(biased, x.size());
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < dim; ++i) ASSERT_EQ(with_bias[t * dim + i], x[t * dim + i] + bias[i]) << "token " << t;

  const std::vector<float> up = random_floats(x.size(), 31);
  float* gate = memory.upload(x);
  cuda::swiglu(gate, memory.upload(up), static_cast<int64_t>(x.size()), memory.stream());
  const std::vector<float> gated = memory.download(gate, x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double expected = x[i] / (1.0 + std::exp(-static_cast<double>(x[i]))) * up[i];
    ASSERT_NEAR(gated[i], expected, 1e-5 * std::fabs(expected) + 1e-6) << "element " << i;
  }
}

// Rows the CPU interleaved, back in plain blocks on the device: every interleaved type, random
// bytes (the layout is a permutation, so any bytes show it), byte for byte.
template <typename Memory>
void check_deinterleave_rows() {
  ThreadPool pool(1);
  const int64_t rows = 16;
  for (TensorType type : kTensorTypes) {
    if (!interleavable_type(type)) continue;
    SCOPED_TRACE(type_name(type));
    const int64_t cols = 2 * type_traits(type).block_elements;
    const auto bytes_per_row = static_cast<int64_t>(row_bytes(type, static_cast<uint64_t>(cols)));
    std::vector<uint8_t> plain(static_cast<size_t>(rows * bytes_per_row));
    std::mt19937 rng(61);
    for (uint8_t& byte : plain) byte = static_cast<uint8_t>(rng());
    std::vector<uint8_t> interleaved = plain;
    interleave_rows(pool, type, cols, rows, interleaved.data());
    ASSERT_NE(interleaved, plain);
    Memory memory;
    uint8_t* restored = memory.template zeros<uint8_t>(plain.size());
    cuda::deinterleave_rows(memory.upload(interleaved), memory.upload(interleaved_offsets(type)), rows, bytes_per_row,
                            type_traits(type).block_bytes, restored, memory.stream());
    EXPECT_EQ(memory.download(restored, plain.size()), plain);
  }
}

// The expert kernels: rows gathered and scattered by index, and a token's chosen experts' rows
// added in order with their weights, bit for bit as the CPU backend sums them.
template <typename Memory>
void check_expert_rows() {
  const int64_t tokens = 5, k = 3, width = 300;
  const std::vector<float> x = random_floats(static_cast<size_t>(tokens * width), 43);
  const std::vector<int32_t> rows = {4, 0, 4, 2};
  Memory memory;
  float* gathered = memory.template zeros<float>(rows.size() * static_cast<size_t>(width));
  const int32_t* device_rows = memory.upload(rows);
  cuda::gather_rows(memory.upload(x), device_rows, static_cast<int64_t>(rows.size()), width, gathered, memory.stream());
  const std::vector<float> got = memory.download(gathered, rows.size() * static_cast<size_t>(width));
  for (size_t i = 0; i < rows.size(); ++i)
    for (int64_t e = 0; e < width; ++e) ASSERT_EQ(got[i * width + e], x[rows[i] * width + e]) << "row " << i;

  const std::vector<int32_t> targets = {3, 0, 1};
  float* scattered = memory.upload(x);
  cuda::scatter_rows(memory.upload(x), memory.upload(targets), 3, width, scattered, memory.stream());
  const std::vector<float> placed = memory.download(scattered, x.size());
  for (int64_t r = 0; r < tokens; ++r) {
    const auto source = std::find(targets.begin(), targets.end(), r);
    const int64_t from = source == targets.end() ? r : source - targets.begin();
    for (int64_t e = 0; e < width; ++e) ASSERT_EQ(placed[r * width + e], x[from * width + e]) << "row " << r;
  }

  const std::vector<float> choices = random_floats(static_cast<size_t>(tokens * k * width), 47, 2.0f);
  const std::vector<float> weights = random_floats(static_cast<size_t>(tokens * k), 53);
  float* residual = memory.upload(x);
  cuda::add_weighted_rows(memory.upload(choices), memory.upload(weights), tokens, k, width, residual, memory.stream());
  const std::vector<float> summed = memory.download(residual, x.size());
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t e = 0; e < width; ++e) {
      std::vector<float> products(static_cast<size_t>(k));
      for (int64_t j = 0; j < k; ++j) products[j] = choices[(t * k + j) * width + e] * weights[t * k + j];
      float sum = products[0];
      for (int64_t j = 1; j < k; ++j) sum += products[j];
      ASSERT_EQ(summed[t * width + e], x[t * width + e] + sum) << "token " << t << " element " << e;
    }
}

// RoPE with partial rotation (adjacent pairs, or NeoX's halves), the half-precision cache and
// grouped-query causal attention for two sequences sharing the batches and the cache (each from its
// own first row, attending to its own rows only) over two batches (the second attends to the
// first's cache, across more than one 32-position chunk), against a float64 reference that rounds K
// and V to half like the cache. Tolerance 1e-4 absolute on outputs of order 1 (float softmax and
// accumulation). scale 0: the usual 1/sqrt(head_dim).
template <typename Memory>
void check_rope_and_attention(bool neox, float scale = 0.0f) {
  const float score_scale = scale > 0.0f ? scale : static_cast<float>(1.0 / std::sqrt(64.0));
  const cuda::AttentionShape shape{4, 2, 64, 48, neox, score_scale};
  const int64_t context = 48, dim = shape.n_heads * shape.head_dim, kv_dim = shape.n_kv_heads * shape.head_dim;
  constexpr int kSequences = 2;
  std::vector<double> frequencies;
  for (int64_t i = 0; i < shape.rope_dim / 2; ++i)
    frequencies.push_back(std::pow(10000.0, -2.0 * static_cast<double>(i) / static_cast<double>(shape.rope_dim)));
  Memory memory;
  const double* device_frequencies = memory.upload(frequencies);
  auto* key_cache = memory.template zeros<uint16_t>(static_cast<size_t>(kSequences * context * kv_dim));
  auto* value_cache = memory.template zeros<uint16_t>(static_cast<size_t>(kSequences * context * kv_dim));
  // Per sequence, per position: rotated and half-rounded.
  std::vector<std::vector<double>> keys[kSequences], values[kSequences];

  const int64_t pairs = shape.rope_dim / 2;
  auto rotate = [&](std::vector<float>& head, int64_t position) {
    for (int64_t i = 0; i < pairs; ++i) {
      const double angle = static_cast<double>(position) * frequencies[i];
      const float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
      float& a = neox ? head[i] : head[2 * i];
      float& b = neox ? head[i + pairs] : head[2 * i + 1];
      const float a0 = a, b0 = b;
      a = a0 * c - b0 * s;
      b = a0 * s + b0 * c;
    }
  };
  // Tokens of each sequence per batch: the second sequence's rows come first in the second batch.
  const int64_t batches[2][kSequences] = {{5, 3}, {37, 1}};
  int64_t positions[kSequences] = {0, 0};
  for (int batch = 0; batch < 2; ++batch) {
    std::vector<cuda::TokenPlace> places;
    std::vector<int> sequence_of;
    for (int order = 0; order < kSequences; ++order) {
      const int sequence = batch == 0 ? order : kSequences - 1 - order;
      for (int64_t i = 0; i < batches[batch][sequence]; ++i) {
        places.push_back({static_cast<int32_t>(positions[sequence] + i), static_cast<int32_t>(sequence * context)});
        sequence_of.push_back(sequence);
      }
    }
    const auto tokens = static_cast<int64_t>(places.size());
    const auto seed = static_cast<uint32_t>(tokens + batch);
    const std::vector<float> q = random_floats(static_cast<size_t>(tokens * dim), 37 + seed);
    const std::vector<float> k = random_floats(static_cast<size_t>(tokens * kv_dim), 41 + seed);
    const std::vector<float> v = random_floats(static_cast<size_t>(tokens * kv_dim), 43 + seed);
    float* q_device = memory.upload(q);
    float* out = memory.template zeros<float>(q.size());
    const cuda::TokenPlace* device_places = memory.upload(places);
    cuda::rope_and_store_kv(q_device, memory.upload(k), memory.upload(v), tokens, device_places, device_frequencies,
                            shape, key_cache, value_cache, memory.stream());
    cuda::attention(q_device, key_cache, value_cache, tokens, device_places, shape, out, memory.stream());
    const std::vector<float> got = memory.download(out, q.size());

    for (int64_t t = 0; t < tokens; ++t) {
      std::vector<double> key_row(static_cast<size_t>(kv_dim)), value_row(static_cast<size_t>(kv_dim));
      for (int64_t h = 0; h < shape.n_kv_heads; ++h) {
        std::vector<float> head(k.begin() + t * kv_dim + h * shape.head_dim,
                                k.begin() + t * kv_dim + (h + 1) * shape.head_dim);
        rotate(head, places[t].position);
        for (int64_t i = 0; i < shape.head_dim; ++i) {
          key_row[h * shape.head_dim + i] = fp16_to_fp32(fp32_to_fp16(head[i]));
          value_row[h * shape.head_dim + i] = fp16_to_fp32(fp32_to_fp16(v[t * kv_dim + h * shape.head_dim + i]));
        }
      }
      keys[sequence_of[t]].push_back(key_row);
      values[sequence_of[t]].push_back(value_row);
    }
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < shape.n_heads; ++h) {
        const int sequence = sequence_of[t];
        std::vector<float> query(q.begin() + t * dim + h * shape.head_dim, q.begin() + t * dim + (h + 1) * shape.head_dim);
        rotate(query, places[t].position);
        const int64_t kv_offset = h / (shape.n_heads / shape.n_kv_heads) * shape.head_dim;
        const int64_t visible = places[t].position + 1;
        std::vector<double> scores(static_cast<size_t>(visible));
        double max_score = -INFINITY;
        for (int64_t p = 0; p < visible; ++p) {
          double dot = 0.0;
          for (int64_t i = 0; i < shape.head_dim; ++i) dot += query[i] * keys[sequence][p][kv_offset + i];
          scores[p] = dot * static_cast<double>(score_scale);
          max_score = std::max(max_score, scores[p]);
        }
        double total = 0.0;
        for (double& s : scores) total += (s = std::exp(s - max_score));
        for (int64_t i = 0; i < shape.head_dim; ++i) {
          double expected = 0.0;
          for (int64_t p = 0; p < visible; ++p) expected += scores[p] / total * values[sequence][p][kv_offset + i];
          ASSERT_NEAR(got[t * dim + h * shape.head_dim + i], expected, 1e-4)
              << "batch " << batch << " token " << t << " (sequence " << sequence << ", position "
              << places[t].position << ") head " << h << " dim " << i;
        }
      }
    for (int sequence = 0; sequence < kSequences; ++sequence) positions[sequence] += batches[batch][sequence];
  }
}

}  // namespace fi::test
