// Every CPU kernel against the scalar reference on random data (values our quantizer encodes, and
// arbitrary block bytes), every instruction-set variant against the others bit for bit, and the
// interleaved layouts and kernels of the types repack.h interleaves. The type lists come from
// io/tensor_type.h's FI_TENSOR_TYPES.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <tuple>

#include "host/kernels/fp16.h"
#include "host/kernels/matmul.h"
#include "host/kernels/quant.h"
#include "host/kernels/quant_x86.h"
#include "host/kernels/repack.h"
#include "random_blocks.h"
#include "test_support.h"

namespace fi {
namespace {

using test::random_block_bytes;

std::vector<TensorType> quantized_types() {
  std::vector<TensorType> types;
  for (TensorType type : kTensorTypes)
    if (!is_float_type(type)) types.push_back(type);
  return types;
}

std::vector<TensorType> interleaved_types() {
  std::vector<TensorType> types;
  for (TensorType type : kTensorTypes)
    if (interleavable_type(type)) types.push_back(type);
  return types;
}

std::vector<float> random_values(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(n);
  for (float& v : values) v = normal(rng);
  return values;
}

// Full-range words: the sums wrap around 2^64.
std::vector<uint64_t> random_words(size_t n) {
  std::mt19937_64 rng(n);
  std::vector<uint64_t> words(n);
  for (uint64_t& w : words) w = rng();
  return words;
}

std::vector<uint8_t> quantized(TensorType type, const std::vector<float>& values) {
  std::vector<uint8_t> bytes(row_bytes(type, values.size()));
  quantize_row(type, values.data(), bytes.data(), static_cast<int64_t>(values.size()));
  return bytes;
}

std::vector<uint8_t> activations_for(TensorType type, const std::vector<float>& x) {
  const auto n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> a(activation_row_bytes(type, n));
  reference::quantize_activations(type, x.data(), a.data(), n);
  return a;
}

// Sum of |w_i x_i| over the row: the scale of the float rounding a kernel's result may show (its
// partial sums can be far larger than the result when terms cancel).
double magnitude(TensorType type, const uint8_t* w, const std::vector<float>& x) {
  std::vector<float> dequantized(x.size());
  dequantize_row(type, w, dequantized.data(), static_cast<int64_t>(x.size()));
  double sum = 0.0;
  for (size_t i = 0; i < x.size(); ++i) sum += std::fabs(static_cast<double>(dequantized[i]) * x[i]);
  return sum;
}

// Kernels sum in float in another order than the reference: within a millionth of the magnitude.
double kernel_tolerance(double reference_result, double row_magnitude) {
  return 1e-5 * (1.0 + std::fabs(reference_result)) + 1e-6 * row_magnitude;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

class KernelTest : public ::testing::TestWithParam<TensorType> {};

TEST_P(KernelTest, DispatchedDotMatchesReference) {
  const TensorType type = GetParam();
  for (int64_t n : {256, 512, 4096, 11008}) {
    for (uint32_t seed = 1; seed <= 4; ++seed) {
      const auto w = quantized(type, random_values(n, seed));
      const auto x = random_values(n, seed + 100);
      std::vector<uint8_t> activations(activation_row_bytes(type, n));
      quantize_activations(type, x.data(), activations.data(), n);
      ASSERT_EQ(activations, activations_for(type, x)) << "activation quantization must be bit-exact, n=" << n;
      const float fast = vec_dot(type, n, w.data(), activations.data());
      const float slow = reference::vec_dot(type, n, w.data(), activations.data());
      EXPECT_NEAR(fast, slow, kernel_tolerance(slow, magnitude(type, w.data(), x)))
          << type_name(type) << " n=" << n << " seed=" << seed;
    }
  }
}

TEST_P(KernelTest, ReferenceDotMatchesDequantizedProduct) {
  const TensorType type = GetParam();
  const int64_t n = 4096;
  for (uint32_t seed = 1; seed <= 4; ++seed) {
    const auto w = quantized(type, random_values(n, seed));
    const auto x = random_values(n, seed + 7);
    std::vector<float> dequantized(n);
    dequantize_row(type, w.data(), dequantized.data(), n);
    double exact = 0, row_magnitude = 0;
    for (int64_t i = 0; i < n; ++i) {
      exact += static_cast<double>(dequantized[i]) * x[i];
      row_magnitude += std::fabs(static_cast<double>(dequantized[i]) * x[i]);
    }
    const float dot = reference::vec_dot(type, n, w.data(), activations_for(type, x).data());
    // 8-bit activations: error ~ 2^-8 of the summed magnitude, far less for float types.
    const double tolerance = activation_format(type) == ActivationFormat::F32 ? 1e-5 * row_magnitude : 4e-3 * row_magnitude;
    EXPECT_NEAR(dot, exact, tolerance) << type_name(type) << " seed=" << seed;
  }
}

TEST_P(KernelTest, MultiTokenDotEqualsSingleTokenBitForBit) {
  const TensorType type = GetParam();
  const int64_t n = 4096 + 256;  // a tail of blocks past the unrolled part
  const auto w = quantized(type, random_values(n, 21));
  const size_t stride = activation_row_bytes(type, n);
  for (int tokens = 1; tokens <= kMaxTokensPerDot; ++tokens) {
    std::vector<uint8_t> activations(stride * tokens);
    for (int t = 0; t < tokens; ++t)
      quantize_activations(type, random_values(n, 30 + t).data(), activations.data() + t * stride, n);
    float together[kMaxTokensPerDot], reference_together[kMaxTokensPerDot];
    vec_dot_tokens(type, n, w.data(), activations.data(), stride, tokens, together);
    reference::vec_dot_tokens(type, n, w.data(), activations.data(), stride, tokens, reference_together);
    for (int t = 0; t < tokens; ++t) {
      const float alone = vec_dot(type, n, w.data(), activations.data() + t * stride);
      EXPECT_TRUE(same_bits(together[t], alone)) << type_name(type) << " token " << t << " of " << tokens;
      EXPECT_NEAR(together[t], reference_together[t], 1e-4 * (1.0 + std::fabs(reference_together[t])));
    }
  }
}

// Several rows in one call (out[t * out_stride + r]) give each row's own bits, dispatched and in
// the reference; the slots between a row's results are left alone.
TEST_P(KernelTest, RowsInOneCallEqualEachRowAlone) {
  const TensorType type = GetParam();
  const int64_t n = 768, rows = 13;
  const size_t row_bytes = fi::row_bytes(type, static_cast<uint64_t>(n)), stride = activation_row_bytes(type, n),
               out_stride = rows + 3;
  std::vector<uint8_t> w;
  for (int64_t r = 0; r < rows; ++r) {
    const auto row = quantized(type, random_values(n, 60 + static_cast<uint32_t>(r)));
    w.insert(w.end(), row.begin(), row.end());
  }
  ASSERT_EQ(w.size(), row_bytes * rows);
  std::vector<uint8_t> activations(stride * kMaxTokensPerDot);
  for (int t = 0; t < kMaxTokensPerDot; ++t)
    quantize_activations(type, random_values(n, 80 + t).data(), activations.data() + t * stride, n);
  for (int tokens = 1; tokens <= kMaxTokensPerDot; ++tokens) {
    const float unset = -12345.0f;
    std::vector<float> together(out_stride * tokens, unset), reference_together(together);
    vec_dot_rows(type, n, w.data(), row_bytes, rows, activations.data(), stride, tokens, together.data(), out_stride);
    reference::vec_dot_rows(type, n, w.data(), row_bytes, rows, activations.data(), stride, tokens,
                            reference_together.data(), out_stride);
    for (int64_t r = 0; r < rows; ++r) {
      float alone[kMaxTokensPerDot], reference_alone[kMaxTokensPerDot];
      vec_dot_tokens(type, n, w.data() + r * row_bytes, activations.data(), stride, tokens, alone);
      reference::vec_dot_tokens(type, n, w.data() + r * row_bytes, activations.data(), stride, tokens, reference_alone);
      for (int t = 0; t < tokens; ++t) {
        EXPECT_TRUE(same_bits(together[t * out_stride + r], alone[t])) << type_name(type) << " row " << r << " token " << t;
        EXPECT_TRUE(same_bits(reference_together[t * out_stride + r], reference_alone[t])) << "reference row " << r;
      }
    }
    for (int t = 0; t < tokens; ++t)
      for (size_t r = rows; r < out_stride; ++r) {
        EXPECT_EQ(together[t * out_stride + r], unset);
        EXPECT_EQ(reference_together[t * out_stride + r], unset);
      }
  }
}

TEST_P(KernelTest, QuantizeDequantizeRoundTrip) {
  const TensorType type = GetParam();
  const int64_t n = 2048;
  const auto x = random_values(n, 3);
  std::vector<float> back(n);
  dequantize_row(type, quantized(type, x).data(), back.data(), n);
  double error = 0, energy = 0;
  for (int64_t i = 0; i < n; ++i) {
    error += (back[i] - x[i]) * (back[i] - x[i]);
    energy += x[i] * x[i];
  }
  // Relative RMS error of round-to-nearest encoding of normal values at each type's bits.
  const double tolerance = [type] {
    switch (type) {
      case TensorType::F32: return 1e-9;
      case TensorType::F16: return 1e-3;
      case TensorType::BF16: return 5e-3;
      case TensorType::Q8_0: return 1e-2;
      case TensorType::Q6_K: return 4e-2;
      case TensorType::Q5_0: case TensorType::Q5_1: case TensorType::Q5_K: return 6e-2;
      case TensorType::Q3_K: return 0.25;
      case TensorType::Q2_K: return 0.5;
      default: return 0.15;
    }
  }();
  EXPECT_LT(std::sqrt(error / energy), tolerance) << type_name(type);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, KernelTest, ::testing::ValuesIn(kTensorTypes),
                         [](const auto& info) { return std::string(type_name(info.param)); });

class QuantizedKernelTest : public ::testing::TestWithParam<TensorType> {};

TEST_P(QuantizedKernelTest, RandomBlockBytesAgreeWithReference) {
  const TensorType type = GetParam();
  for (const int64_t n : {1024, 4096 + 256}) {
    const auto w = random_block_bytes(type, n, 1, 11);
    const auto x = random_values(n, 12);
    std::vector<uint8_t> activations(activation_row_bytes(type, n));
    quantize_activations(type, x.data(), activations.data(), n);
    const float slow = reference::vec_dot(type, n, w.data(), activations.data());
    float fast[kMaxTokensPerDot];
    vec_dot_tokens(type, n, w.data(), activations.data(), 0, kMaxTokensPerDot, fast);
    for (int t = 0; t < kMaxTokensPerDot; ++t)
      EXPECT_NEAR(fast[t], slow, kernel_tolerance(slow, magnitude(type, w.data(), x))) << type_name(type) << " n=" << n;
  }
}

TEST_P(QuantizedKernelTest, DequantizedRandomBlocksGiveTheReferenceDot) {
  // The reference dot product and dequantize_row agree on arbitrary bytes too (one definition of
  // each format, two ways), up to the activations' 8-bit rounding.
  const TensorType type = GetParam();
  const int64_t n = 2048;
  const auto w = random_block_bytes(type, n, 1, 13);
  const auto x = random_values(n, 14);
  std::vector<float> dequantized(n);
  dequantize_row(type, w.data(), dequantized.data(), n);
  const std::vector<uint8_t> activations = activations_for(type, x);
  double exact = 0.0, row_magnitude = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    exact += static_cast<double>(dequantized[i]) * x[i];
    row_magnitude += std::fabs(static_cast<double>(dequantized[i]) * x[i]);
  }
  EXPECT_NEAR(reference::vec_dot(type, n, w.data(), activations.data()), exact, 4e-3 * row_magnitude) << type_name(type);
}

INSTANTIATE_TEST_SUITE_P(QuantizedTypes, QuantizedKernelTest, ::testing::ValuesIn(quantized_types()),
                         [](const auto& info) { return std::string(type_name(info.param)); });

// ---- instruction-set variants -----------------------------------------------------------------

// A half-precision cache (keys, then values) of `positions` rows `stride` halves apart, `heads`
// queries and softmax-like weights: rows longer than one pass of 16 with a tail, more heads than
// one pass takes, more positions than one tile.
struct AttentionCase {
  int64_t n, positions;
  int heads;
  size_t stride, query_stride, out_stride;
  std::vector<uint16_t> cache;
  std::vector<float> queries, weights;
  const uint16_t* keys() const { return cache.data(); }
  const uint16_t* values() const { return cache.data() + static_cast<size_t>(positions) * stride; }
  std::string name() const {
    return "n " + std::to_string(n) + ", " + std::to_string(positions) + " positions, " + std::to_string(heads) + " heads";
  }
};

std::vector<AttentionCase> attention_cases() {
  std::vector<AttentionCase> cases;
  for (auto [n, positions, heads] : {std::tuple{int64_t{131}, int64_t{70}, 9}, std::tuple{int64_t{128}, int64_t{37}, 8},
                                     std::tuple{int64_t{64}, int64_t{1}, 1}, std::tuple{int64_t{7}, int64_t{130}, 3}}) {
    AttentionCase c{n, positions, heads, static_cast<size_t>(n) + 5, static_cast<size_t>(n) + 3, static_cast<size_t>(n) + 1,
                    {}, {}, {}};
    const auto cache = random_values(2 * static_cast<size_t>(positions) * c.stride, static_cast<uint32_t>(n + positions));
    for (float v : cache) c.cache.push_back(fp32_to_fp16(v));
    c.queries = random_values(static_cast<size_t>(heads) * c.query_stride, static_cast<uint32_t>(heads));
    c.weights = random_values(static_cast<size_t>(heads * positions), 77, 0.1f);
    cases.push_back(std::move(c));
  }
  return cases;
}

// Score rows for the softmax: lengths around the 8-lane width, spreads from none to far past
// where exp underflows (after the scale of 0.125 the tests use).
std::vector<std::vector<float>> softmax_rows() {
  std::vector<std::vector<float>> rows;
  for (size_t n : {1, 7, 8, 9, 64, 131, 1000})
    for (float spread : {0.0f, 1.0f, 30.0f, 2000.0f}) {
      std::vector<float> row = random_values(n, static_cast<uint32_t>(n) + static_cast<uint32_t>(spread), spread);
      if (n > 3) row[n / 3] = 4.0f * spread;  // one clear winner
      rows.push_back(std::move(row));
    }
  return rows;
}

struct VariantCase {
  TensorType type;
  size_t variant;  // index into x86_kernel_variants()
};

std::vector<VariantCase> variant_cases(const std::vector<TensorType>& types) {
  std::vector<VariantCase> cases;
  for (TensorType type : types)
    for (size_t v = 1; v < x86_kernel_variants().size(); ++v) cases.push_back({type, v});
  return cases;
}

std::string variant_case_name(const ::testing::TestParamInfo<VariantCase>& info) {
  std::string name = std::string(type_name(info.param.type)) + "_" + x86_kernel_variants()[info.param.variant].name;
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

class VariantTest : public ::testing::TestWithParam<VariantCase> {
 protected:
  void SetUp() override {
    const KernelVariant& baseline = x86_kernel_variants()[0];
    const KernelVariant& variant = x86_kernel_variants()[GetParam().variant];
    if (!baseline.usable) GTEST_SKIP() << "CPU lacks " << baseline.missing << ": no SIMD kernels run here";
    if (!variant.usable)
      GTEST_SKIP() << "CPU lacks " << variant.missing << ": the " << variant.name << " kernels cannot run here";
  }
  const KernelVariant& baseline() const { return x86_kernel_variants()[0]; }
  const KernelVariant& variant() const { return x86_kernel_variants()[GetParam().variant]; }
};

// Rows from our quantizer and rows of arbitrary bytes, 1 to 4 tokens: every output bit for bit as
// the AVX2 kernels give it.
TEST_P(VariantTest, RowKernelsAreBitIdenticalToAvx2) {
  const TensorType type = GetParam().type;
  const int64_t n = 4096 + 256;
  const size_t stride = activation_row_bytes(type, n);
  std::vector<uint8_t> activations(stride * kMaxTokensPerDot), baseline_activations(activations.size());
  for (int t = 0; t < kMaxTokensPerDot; ++t) {
    const auto x = random_values(n, 42 + t);
    variant().quantize_activations(type, x.data(), activations.data() + t * stride, n);
    baseline().quantize_activations(type, x.data(), baseline_activations.data() + t * stride, n);
  }
  ASSERT_EQ(activations, baseline_activations) << "activations";
  std::vector<std::vector<uint8_t>> rows = {quantized(type, random_values(n, 41))};
  if (!is_float_type(type)) rows.push_back(random_block_bytes(type, n, 1, 43));
  for (const auto& w : rows)
    for (int tokens = 1; tokens <= kMaxTokensPerDot; ++tokens) {
      float got[kMaxTokensPerDot], want[kMaxTokensPerDot];
      variant().vec_dot_tokens(type, n, w.data(), activations.data(), stride, tokens, got);
      baseline().vec_dot_tokens(type, n, w.data(), activations.data(), stride, tokens, want);
      for (int t = 0; t < tokens; ++t) EXPECT_TRUE(same_bits(got[t], want[t])) << "token " << t << " of " << tokens;
      EXPECT_TRUE(same_bits(variant().vec_dot(type, n, w.data(), activations.data()), want[0]));
      float rows_got[2 * kMaxTokensPerDot];
      variant().vec_dot_rows(type, n, w.data(), 0, 2, activations.data(), stride, tokens, rows_got, 2);
      for (int t = 0; t < tokens; ++t)
        for (int r = 0; r < 2; ++r) EXPECT_TRUE(same_bits(rows_got[2 * t + r], want[t])) << "vec_dot_rows token " << t;
    }
  if (type == TensorType::F16)
    for (const AttentionCase& c : attention_cases()) {
      SCOPED_TRACE(c.name());
      std::vector<float> got(c.heads * c.positions), want(got.size());
      variant().attention_scores_f16(c.n, c.keys(), c.stride, c.positions, c.queries.data(), c.query_stride, c.heads,
                                     got.data(), c.positions);
      baseline().attention_scores_f16(c.n, c.keys(), c.stride, c.positions, c.queries.data(), c.query_stride, c.heads,
                                      want.data(), c.positions);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << "attention_scores_f16";
      std::vector<float> out(c.heads * c.out_stride, 0.5f), out_want(out.size(), 0.5f);
      variant().attention_values_f16(c.n, c.values(), c.stride, c.positions, c.weights.data(), c.positions, c.heads,
                                     out.data(), c.out_stride);
      baseline().attention_values_f16(c.n, c.values(), c.stride, c.positions, c.weights.data(), c.positions, c.heads,
                                      out_want.data(), c.out_stride);
      EXPECT_EQ(std::memcmp(out.data(), out_want.data(), out.size() * sizeof(float)), 0) << "attention_values_f16";
    }
  if (type == TensorType::F16)
    for (const std::vector<float>& row : softmax_rows()) {
      std::vector<float> got = row, want = row;
      variant().attention_softmax(got.data(), static_cast<int64_t>(got.size()), 0.125f);
      baseline().attention_softmax(want.data(), static_cast<int64_t>(want.size()), 0.125f);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << "attention_softmax of " << row.size();
    }
  if (type == TensorType::F16) {
    const std::vector<uint64_t> words = random_words(1000);
    for (int64_t first : {0, 1, 3})
      for (int64_t count : {0, 1, 7, 8, 31, 32, 33, 64, 200, 997})
        EXPECT_EQ(variant().sum_words(words.data() + first, count), reference::sum_words(words.data() + first, count))
            << count << " words from " << first;
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, VariantTest, ::testing::ValuesIn(variant_cases({std::begin(kTensorTypes), std::end(kTensorTypes)})),
                         variant_case_name);

class InterleavedVariantTest : public VariantTest {};

// 5 groups (two pairs and a single one for the AVX-512 kernels), 1 to 4 tokens, over rows short
// and long enough for a single token to take either of the AVX-512 paths.
TEST_P(InterleavedVariantTest, KernelsAreBitIdenticalToAvx2) {
  const TensorType type = GetParam().type;
  for (const int64_t n : {int64_t{1024}, int64_t{4096 + 256}}) {
    const int64_t rows = 5 * kInterleavedRows;
    std::vector<uint8_t> w = random_block_bytes(type, n, rows, 47);
    ThreadPool pool(1);
    interleave_rows(pool, type, n, rows, w.data());
    const size_t stride = activation_row_bytes(type, n);
    std::vector<uint8_t> activations(stride * kMaxTokensPerDot);
    for (int t = 0; t < kMaxTokensPerDot; ++t)
      baseline().quantize_activations(type, random_values(n, 48 + t).data(), activations.data() + t * stride, n);
    for (int tokens = 1; tokens <= kMaxTokensPerDot; ++tokens) {
      std::vector<float> got(rows * tokens), want(rows * tokens);
      variant().vec_dot_interleaved(type, n, w.data(), rows / kInterleavedRows, activations.data(), stride, tokens,
                                    got.data(), rows, 0);
      baseline().vec_dot_interleaved(type, n, w.data(), rows / kInterleavedRows, activations.data(), stride, tokens,
                                     want.data(), rows, 0);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
          << n << " columns, " << tokens << " tokens";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, InterleavedVariantTest, ::testing::ValuesIn(variant_cases(interleaved_types())),
                         variant_case_name);

// ---- interleaved rows -------------------------------------------------------------------------

class InterleavedTest : public ::testing::TestWithParam<TensorType> {};

TEST_P(InterleavedTest, LayoutIsLosslessOnArbitraryBytes) {
  const TensorType type = GetParam();
  const int64_t n = 512, rows = 16;
  const std::vector<uint8_t> plain = random_block_bytes(type, n, rows, 51);
  std::vector<uint8_t> packed = plain;
  WeightMatrix w{type, n, rows, row_bytes(type, n), packed.data()};
  if (!can_interleave(w)) GTEST_SKIP() << "interleaved rows are only used with the SIMD kernels";
  interleave_rows(w, packed.data());
  ASSERT_TRUE(w.interleaved);
  EXPECT_NE(packed, plain);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<uint8_t> back(w.row_bytes);
    extract_row(w, r, back.data());
    ASSERT_EQ(std::memcmp(back.data(), plain.data() + r * w.row_bytes, w.row_bytes), 0) << "row " << r;
  }
  // In place over a pool, as streamed rows are: the same bytes.
  std::vector<uint8_t> pooled = plain;
  ThreadPool pool(2);
  interleave_rows(pool, type, n, rows, pooled.data());
  EXPECT_EQ(pooled, packed);
}

// Each row of 1 to 5 groups against the reference on its plain row, for quantizer-made and
// arbitrary blocks; a row's result is the same however many groups and tokens are evaluated
// together.
TEST_P(InterleavedTest, KernelMatchesTheReferenceAndIgnoresBatching) {
  if (!simd_kernels_active()) GTEST_SKIP() << "interleaved rows are only used with the SIMD kernels";
  const TensorType type = GetParam();
  const int64_t n = 4096 + 256, rows = 5 * kInterleavedRows;
  const uint64_t bytes_per_row = row_bytes(type, n);
  std::vector<uint8_t> made(bytes_per_row * rows);
  for (int64_t r = 0; r < rows; ++r)
    quantize_row(type, random_values(n, 60 + r).data(), made.data() + r * bytes_per_row, n);
  const size_t stride = activation_row_bytes(type, n);
  std::vector<std::vector<float>> xs;
  std::vector<uint8_t> activations(stride * kMaxTokensPerDot);
  for (int t = 0; t < kMaxTokensPerDot; ++t) {
    xs.push_back(random_values(n, 70 + t));
    quantize_activations(type, xs.back().data(), activations.data() + t * stride, n);
  }
  for (const std::vector<uint8_t>& plain : {made, random_block_bytes(type, n, rows, 80)}) {
    std::vector<uint8_t> packed = plain;
    WeightMatrix w{type, n, rows, bytes_per_row, packed.data()};
    interleave_rows(w, packed.data());
    std::vector<float> all(rows * kMaxTokensPerDot);
    vec_dot_interleaved(type, n, packed.data(), rows / kInterleavedRows, activations.data(), stride, kMaxTokensPerDot,
                        all.data(), rows);
    for (int64_t r = 0; r < rows; ++r)
      for (int t = 0; t < kMaxTokensPerDot; ++t) {
        const uint8_t* row = plain.data() + r * bytes_per_row;
        const float expected = reference::vec_dot(type, n, row, activations.data() + t * stride);
        ASSERT_NEAR(all[t * rows + r], expected, kernel_tolerance(expected, magnitude(type, row, xs[t])))
            << type_name(type) << " row " << r << " token " << t;
      }
    for (int64_t group = 0; group < rows / kInterleavedRows; ++group)
      for (int t = 0; t < kMaxTokensPerDot; ++t) {
        float alone[kInterleavedRows];
        vec_dot_interleaved(type, n, packed.data() + group * kInterleavedRows * bytes_per_row, 1,
                            activations.data() + t * stride, stride, 1, alone, kInterleavedRows);
        for (int r = 0; r < kInterleavedRows; ++r)
          ASSERT_TRUE(same_bits(alone[r], all[t * rows + group * kInterleavedRows + r]))
              << "batching changed row " << group * kInterleavedRows + r << " token " << t;
      }
  }
}

// Rows computed one at a time give the bits of the same rows interleaved (for the types that
// promise it), on every kernel variant, for quantizer-made and arbitrary blocks, 1 to 4 tokens.
TEST_P(InterleavedTest, RowKernelsGiveTheInterleavedBits) {
  const TensorType type = GetParam();
  if (!simd_kernels_active()) GTEST_SKIP() << "interleaved rows are only used with the SIMD kernels";
  if (!row_kernels_match_interleaved(type)) GTEST_SKIP() << type_name(type) << " rows are always computed one way";
  const int64_t n = 2048 + 256, rows = 3 * kInterleavedRows;
  const uint64_t bytes_per_row = row_bytes(type, n);
  std::vector<uint8_t> made(bytes_per_row * rows);
  for (int64_t r = 0; r < rows; ++r)
    quantize_row(type, random_values(n, 90 + r, 4.0f).data(), made.data() + r * bytes_per_row, n);
  const size_t stride = activation_row_bytes(type, n);
  std::vector<uint8_t> activations(stride * kMaxTokensPerDot);
  for (const KernelVariant& kernels : x86_kernel_variants()) {
    if (!kernels.usable) continue;
    for (int t = 0; t < kMaxTokensPerDot; ++t)
      kernels.quantize_activations(type, random_values(n, 95 + t, 3.0f).data(), activations.data() + t * stride, n);
    for (const std::vector<uint8_t>& plain : {made, random_block_bytes(type, n, rows, 99)}) {
      std::vector<uint8_t> packed = plain;
      ThreadPool pool(1);
      interleave_rows(pool, type, n, rows, packed.data());
      for (int tokens = 1; tokens <= kMaxTokensPerDot; ++tokens) {
        std::vector<float> interleaved(rows * tokens);
        kernels.vec_dot_interleaved(type, n, packed.data(), rows / kInterleavedRows, activations.data(), stride, tokens,
                                    interleaved.data(), rows, 0);
        for (int64_t r = 0; r < rows; ++r) {
          float alone[kMaxTokensPerDot];
          kernels.vec_dot_tokens(type, n, plain.data() + r * bytes_per_row, activations.data(), stride, tokens, alone);
          for (int t = 0; t < tokens; ++t)
            ASSERT_TRUE(same_bits(alone[t], interleaved[t * rows + r]))
                << kernels.name << " " << type_name(type) << " row " << r << " token " << t << " of " << tokens << ": "
                << alone[t] << " alone, " << interleaved[t * rows + r] << " interleaved";
        }
      }
    }
  }
}

// matmul gives a plain matrix that asks for it the bits of the same matrix interleaved, for every
// type it interleaves (row kernels where they match, else groups interleaved in cache), for a few
// tokens and a prompt's many, on one thread and on several: experts read in decode compute as read.
TEST_P(InterleavedTest, PlainMatricesGiveTheInterleavedBits) {
  const TensorType type = GetParam();
  if (!simd_kernels_active()) GTEST_SKIP() << "interleaved rows are only used with the SIMD kernels";
  const int64_t n = 2048 + 256, rows = 5 * kInterleavedRows;
  const uint64_t bytes_per_row = row_bytes(type, n);
  std::vector<uint8_t> made(bytes_per_row * rows);
  for (int64_t r = 0; r < rows; ++r)
    quantize_row(type, random_values(n, 130 + r, 4.0f).data(), made.data() + r * bytes_per_row, n);
  for (const std::vector<uint8_t>& plain : {made, random_block_bytes(type, n, rows, 139)}) {
    std::vector<uint8_t> packed = plain;
    WeightMatrix interleaved{type, n, rows, bytes_per_row, packed.data()};
    interleave_rows(interleaved, packed.data());
    WeightMatrix as_read{type, n, rows, bytes_per_row, plain.data()};
    as_read.as_interleaved = true;
    for (int64_t tokens : {1, 2, 4, 9}) {
      std::vector<float> x(static_cast<size_t>(n * tokens));
      for (int64_t t = 0; t < tokens; ++t) {
        const std::vector<float> row = random_values(n, 140 + static_cast<int>(t), 3.0f);
        std::copy(row.begin(), row.end(), x.begin() + t * n);
      }
      for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        QuantizedBatch batch;
        quantize_batch(pool, type, x.data(), n, tokens, batch);
        std::vector<float> want(static_cast<size_t>(rows * tokens)), got(want.size());
        matmul(pool, interleaved, batch, want.data());
        matmul(pool, as_read, batch, got.data());
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_TRUE(same_bits(got[i], want[i]))
              << type_name(type) << " row " << i % rows << " token " << i / rows << " of " << tokens << ", " << threads
              << " threads: " << got[i] << " as read, " << want[i] << " interleaved";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(InterleavedTypes, InterleavedTest, ::testing::ValuesIn(interleaved_types()),
                         [](const auto& info) { return std::string(type_name(info.param)); });

// ---- matmul over a pool -------------------------------------------------------------------------

// matmul hands each thread a contiguous range and lets the others help with what remains of it:
// however the rows are divided (1 to 5 threads, a matrix split into resident and streamed parts or
// not, several matrices in one section), for a few tokens (one kernel call per chunk) or more (one
// per pair of groups and 4-token block), every result is the bits of the row's own product.
TEST(Matmul, SameBitsOnEveryPoolAndSplit) {
  // An odd number of groups (a single one at each end) and enough of them for chunks of several pairs.
  const int64_t n = 512, rows = 123 * kInterleavedRows;
  for (TensorType type : {TensorType::Q4_K, TensorType::Q6_K, TensorType::Q8_0, TensorType::Q5_0}) {
    std::vector<uint8_t> plain = random_block_bytes(type, n, rows, 120);
    std::vector<uint8_t> packed = plain;
    WeightMatrix w{type, n, rows, row_bytes(type, n), packed.data()};
    if (can_interleave(w)) interleave_rows(w, packed.data());
    // The same rows split into a resident head and a streamed tail at a whole group.
    std::vector<uint8_t> tail(packed.begin() + 5 * kInterleavedRows * w.row_bytes, packed.end());
    WeightMatrix split = w;
    split.tail = tail.data();
    split.split_row = 5 * kInterleavedRows;
    for (int64_t tokens : {3, 9}) {
      std::vector<float> x(static_cast<size_t>(n * tokens));
      for (int64_t t = 0; t < tokens; ++t) {
        const std::vector<float> row = random_values(n, 121 + static_cast<int>(t));
        std::copy(row.begin(), row.end(), x.begin() + t * n);
      }
      ThreadPool single(1);
      QuantizedBatch batch;
      quantize_batch(single, type, x.data(), n, tokens, batch);
      std::vector<float> want(static_cast<size_t>(rows * tokens));
      matmul(single, w, batch, want.data());
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t t = 0; t < tokens; ++t) {
          float alone;
          if (w.interleaved) {
            float group[kInterleavedRows];
            vec_dot_interleaved(type, n, packed.data() + r / kInterleavedRows * kInterleavedRows * w.row_bytes, 1,
                                batch.row(t), batch.row_bytes, 1, group, kInterleavedRows);
            alone = group[r % kInterleavedRows];
          } else {
            alone = vec_dot(type, n, plain.data() + r * w.row_bytes, batch.row(t));
          }
          ASSERT_TRUE(same_bits(alone, want[t * rows + r]))
              << type_name(type) << " row " << r << " token " << t << " of " << tokens;
        }
      for (int threads : {1, 2, 3, 5}) {
        ThreadPool pool(threads);
        for (const WeightMatrix& m : {w, split}) {
          std::vector<float> got(want.size());
          matmul(pool, m, batch, got.data());
          ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
              << type_name(type) << ", " << tokens << " tokens on " << threads << " threads" << (m.tail ? ", split" : "");
        }
        // Several products in one parallel section, a split one between whole ones.
        std::vector<std::vector<float>> outputs(3, std::vector<float>(want.size()));
        const MatrixProduct products[] = {{&w, outputs[0].data()}, {&split, outputs[1].data()}, {&w, outputs[2].data()}};
        matmul(pool, products, batch);
        for (size_t i = 0; i < outputs.size(); ++i)
          ASSERT_EQ(std::memcmp(outputs[i].data(), want.data(), want.size() * sizeof(float)), 0)
              << type_name(type) << " product " << i << " of three, " << tokens << " tokens on " << threads << " threads";
        // Products of ranges of the rows (several experts, each with its tokens), more than fit in
        // one product's parts: each range's results are the bits of the whole batch's.
        constexpr int64_t kRanged = 12;
        std::vector<std::vector<float>> ranged_outputs;
        std::vector<MatrixProduct> ranged;
        for (int64_t i = 0; i < kRanged; ++i) {
          const int64_t first = i % tokens, count = 1 + i % (tokens - first);
          ranged_outputs.emplace_back(static_cast<size_t>(count * rows));
          ranged.push_back({i % 2 ? &split : &w, ranged_outputs.back().data(), first, count});
        }
        matmul(pool, ranged, batch);
        for (int64_t i = 0; i < kRanged; ++i)
          ASSERT_EQ(std::memcmp(ranged_outputs[static_cast<size_t>(i)].data(), want.data() + ranged[static_cast<size_t>(i)].first_token * rows,
                                ranged_outputs[static_cast<size_t>(i)].size() * sizeof(float)), 0)
              << type_name(type) << " rows from " << ranged[static_cast<size_t>(i)].first_token << ", " << tokens << " tokens on " << threads
              << " threads";
      }
    }
  }
}

// ---- the rest -----------------------------------------------------------------------------------

TEST(Kernels, SimdIsActiveOnThisMachine) {
  if (std::getenv("FLEXINFER_NO_SIMD")) GTEST_SKIP() << "FLEXINFER_NO_SIMD is set: scalar kernels by request";
  if (!x86_kernel_variants()[0].usable) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C: the scalar kernels are the ones in use";
  EXPECT_TRUE(simd_kernels_active());
  EXPECT_STRNE(kernel_isa_name(), "scalar");
}

TEST(Kernels, EveryInterleavableTypeHasALayoutAndAKernel) {
  // interleave_rows and vec_dot_interleaved fail for a type without one.
  if (!simd_kernels_active()) GTEST_SKIP() << "interleaved rows are only used with the SIMD kernels";
  for (TensorType type : kTensorTypes) {
    if (!interleavable_type(type)) continue;
    const int64_t n = type_traits(type).block_elements * 2;
    std::vector<uint8_t> w = quantized(type, random_values(static_cast<size_t>(n * kInterleavedRows), 90));
    WeightMatrix matrix{type, n, kInterleavedRows, row_bytes(type, n), w.data()};
    EXPECT_NO_THROW(interleave_rows(matrix, w.data())) << type_name(type);
    std::vector<uint8_t> activations(activation_row_bytes(type, n));
    quantize_activations(type, random_values(n, 91).data(), activations.data(), n);
    float out[kInterleavedRows];
    EXPECT_NO_THROW(vec_dot_interleaved(type, n, w.data(), 1, activations.data(), 0, 1, out, kInterleavedRows))
        << type_name(type);
  }
}

// Activation rows lie one after another (the batch's stride is one row's bytes): every row's
// floats must stay aligned, whatever the number of blocks.
TEST(Kernels, ActivationRowsKeepTheNextRowAligned) {
  for (TensorType type : kTensorTypes)
    for (int64_t n : {32, 96, 256, 352, 2816, 4096}) {
      if (n % static_cast<int64_t>(type_traits(type).block_elements) != 0) continue;
      EXPECT_EQ(activation_row_bytes(type, n) % alignof(float), 0u) << type_name(type) << " n " << n;
    }
}

TEST(Kernels, AttentionKernelsMatchReference) {
  for (const AttentionCase& c : attention_cases()) {
    SCOPED_TRACE(c.name());
    std::vector<float> fast(c.heads * c.positions), slow(fast.size());
    attention_scores_f16(c.n, c.keys(), c.stride, c.positions, c.queries.data(), c.query_stride, c.heads, fast.data(),
                         c.positions);
    reference::attention_scores_f16(c.n, c.keys(), c.stride, c.positions, c.queries.data(), c.query_stride, c.heads,
                                    slow.data(), c.positions);
    for (size_t i = 0; i < fast.size(); ++i) EXPECT_NEAR(fast[i], slow[i], 1e-4f * std::sqrt(static_cast<float>(c.n))) << i;
    std::vector<float> out(c.heads * c.out_stride, 0.5f), out_slow(out.size(), 0.5f);
    attention_values_f16(c.n, c.values(), c.stride, c.positions, c.weights.data(), c.positions, c.heads, out.data(),
                         c.out_stride);
    reference::attention_values_f16(c.n, c.values(), c.stride, c.positions, c.weights.data(), c.positions, c.heads,
                                    out_slow.data(), c.out_stride);
    for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], out_slow[i], 1e-5f * static_cast<float>(c.positions)) << i;
  }
}

TEST(Kernels, SumWordsMatchesReference) {
  const std::vector<uint64_t> words = random_words(4099);
  for (int64_t count : {0, 1, 15, 16, 4096, 4098})
    EXPECT_EQ(sum_words(words.data() + 1, count), reference::sum_words(words.data() + 1, count)) << count;
  const std::vector<uint64_t> ones(100, ~uint64_t{0});
  EXPECT_EQ(sum_words(ones.data(), 100), uint64_t{0} - 100) << "wraps around 2^64";
}

// The polynomial exponential against std::exp: each weight over the largest one is exp(score -
// the largest), whatever the totals' summation order; those agree within 4 units in the last place
// (a weight under 2^-126 being 0 or tiny). The weights sum to 1.
TEST(Kernels, AttentionSoftmaxMatchesReference) {
  for (const std::vector<float>& row : softmax_rows()) {
    SCOPED_TRACE(row.size());
    std::vector<float> fast = row, slow = row;
    attention_softmax(fast.data(), static_cast<int64_t>(fast.size()), 0.125f);
    reference::attention_softmax(slow.data(), static_cast<int64_t>(slow.size()), 0.125f);
    const size_t top = static_cast<size_t>(std::max_element(row.begin(), row.end()) - row.begin());
    double total = 0.0;
    for (size_t i = 0; i < fast.size(); ++i) {
      const double fast_ratio = static_cast<double>(fast[i]) / fast[top], slow_ratio = static_cast<double>(slow[i]) / slow[top];
      EXPECT_NEAR(fast_ratio, slow_ratio, 5e-7 * slow_ratio + 1e-37) << i;
      total += fast[i];
    }
    EXPECT_NEAR(total, 1.0, 1e-5);
    EXPECT_NEAR(fast[top], slow[top], 1e-5f * slow[top]);
  }
  float one = 3.5f;
  attention_softmax(&one, 1, 0.125f);
  EXPECT_EQ(one, 1.0f) << "a single position takes all the weight";
}

// Heads computed together give each head's bits alone, and the positions of the values may be
// split between calls: how a thread's task is cut never changes the attention's output.
TEST(Kernels, AttentionBitsDoNotDependOnHowHeadsAndPositionsAreGrouped) {
  for (const AttentionCase& c : attention_cases()) {
    SCOPED_TRACE(c.name());
    std::vector<float> scores(c.heads * c.positions);
    attention_scores_f16(c.n, c.keys(), c.stride, c.positions, c.queries.data(), c.query_stride, c.heads, scores.data(),
                         c.positions);
    for (int h = 0; h < c.heads; ++h)
      for (int64_t p = 0; p < c.positions; ++p)
        ASSERT_TRUE(same_bits(scores[h * c.positions + p],
                              vec_dot(TensorType::F16, c.n, c.keys() + p * c.stride, c.queries.data() + h * c.query_stride)))
            << "head " << h << " position " << p;
    std::vector<float> together(c.heads * c.out_stride, 0.5f), apart(together.size(), 0.5f);
    attention_values_f16(c.n, c.values(), c.stride, c.positions, c.weights.data(), c.positions, c.heads, together.data(),
                         c.out_stride);
    for (int h = 0; h < c.heads; ++h)
      for (int64_t p = 0; p < c.positions; ++p)
        attention_values_f16(c.n, c.values() + p * c.stride, c.stride, 1, c.weights.data() + h * c.positions + p, 1, 1,
                             apart.data() + h * c.out_stride, c.out_stride);
    EXPECT_EQ(std::memcmp(together.data(), apart.data(), together.size() * sizeof(float)), 0);
  }
}

TEST(Fp16, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(fp32_to_fp16(f), h);
  }
}

TEST(Fp16, RoundsToNearestEven) {
  EXPECT_EQ(fp32_to_fp16(1.0f + 1.0f / 2048.0f), 0x3c00);  // halfway, rounds down to even
  EXPECT_EQ(fp32_to_fp16(1.0f + 3.0f / 2048.0f), 0x3c02);  // halfway, rounds up to even
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);               // overflows to infinity
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(5.96e-8f), 0x0001);                // smallest subnormal
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_fp32(0x3f80), 1.0f);
}

}  // namespace
}  // namespace fi
