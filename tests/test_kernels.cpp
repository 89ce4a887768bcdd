// Every CPU kernel against the scalar reference on random data.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>

#include "host/kernels/fp16.h"
#include "host/kernels/quant.h"
#include "host/kernels/quant_x86.h"
#include "host/kernels/repack.h"
#include "test_support.h"

namespace fi {
namespace {

std::vector<TensorType> quantized_types() {
  std::vector<TensorType> types;
  for (TensorType type : kTensorTypes)
    if (!is_float_type(type)) types.push_back(type);
  return types;
}

std::vector<float> random_values(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(n);
  for (float& v : values) v = normal(rng);
  return values;
}

std::vector<uint8_t> quantized(TensorType type, const std::vector<float>& values) {
  std::vector<uint8_t> bytes(row_bytes(type, values.size()));
  quantize_row(type, values.data(), bytes.data(), static_cast<int64_t>(values.size()));
  return bytes;
}

class KernelTest : public ::testing::TestWithParam<TensorType> {};

TEST_P(KernelTest, DispatchedDotMatchesReference) {
  const TensorType type = GetParam();
  for (int64_t n : {256, 512, 4096, 11008}) {
    for (uint32_t seed = 1; seed <= 4; ++seed) {
      const auto w = quantized(type, random_values(n, seed));
      const auto x = random_values(n, seed + 100);
      std::vector<uint8_t> activations(activation_row_bytes(type, n)), reference_activations(activations.size());
      quantize_activations(type, x.data(), activations.data(), n);
      reference::quantize_activations(type, x.data(), reference_activations.data(), n);
      ASSERT_EQ(activations, reference_activations) << "activation quantization must be bit-exact, n=" << n;
      const float fast = vec_dot(type, n, w.data(), activations.data());
      const float slow = reference::vec_dot(type, n, w.data(), activations.data());
      // Only the float summation order differs.
      EXPECT_NEAR(fast, slow, 1e-5 * std::sqrt(static_cast<double>(n)) * (1.0 + std::fabs(slow)))
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
    double exact = 0, magnitude = 0;
    for (int64_t i = 0; i < n; ++i) {
      exact += static_cast<double>(dequantized[i]) * x[i];
      magnitude += std::fabs(static_cast<double>(dequantized[i]) * x[i]);
    }
    std::vector<uint8_t> activations(activation_row_bytes(type, n));
    reference::quantize_activations(type, x.data(), activations.data(), n);
    const float dot = reference::vec_dot(type, n, w.data(), activations.data());
    // 8-bit activations: error ~ 2^-8 of the summed magnitude, far less for float types.
    const double tolerance = activation_format(type) == ActivationFormat::F32 ? 1e-5 * magnitude : 4e-3 * magnitude;
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
      EXPECT_EQ(std::memcmp(&together[t], &alone, sizeof alone), 0) << type_name(type) << " token " << t << " of " << tokens;
      EXPECT_NEAR(together[t], reference_together[t], 1e-4 * (1.0 + std::fabs(reference_together[t])));
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
  const double tolerance = type == TensorType::F32   ? 1e-9
                           : type == TensorType::F16 ? 1e-3
                           : type == TensorType::BF16 ? 5e-3
                           : type == TensorType::Q8_0 ? 1e-2
                           : type == TensorType::Q6_K ? 4e-2
                           : type == TensorType::Q5_K ? 6e-2
                                                      : 0.15;
  EXPECT_LT(std::sqrt(error / energy), tolerance) << type_name(type);
}

class QuantizedKernelTest : public ::testing::TestWithParam<TensorType> {};

TEST_P(QuantizedKernelTest, RandomBlockBytesAgreeWithReference) {
  // Arbitrary block contents (not produced by our quantizer) with sane scales.
  const TensorType type = GetParam();
  const int64_t n = 1024;
  std::mt19937 rng(11);
  std::vector<uint8_t> w(row_bytes(type, n));
  for (uint8_t& byte : w) byte = static_cast<uint8_t>(rng());
  const TypeTraits& traits = type_traits(type);
  for (size_t block = 0; block < w.size() / traits.block_bytes; ++block) {
    uint8_t* p = w.data() + block * traits.block_bytes;
    const uint16_t scale = fp32_to_fp16(0.01f * static_cast<float>(1 + rng() % 100));
    if (type == TensorType::Q6_K) std::memcpy(p + 208, &scale, 2);
    else std::memcpy(p, &scale, 2);
    if (type == TensorType::Q4_K || type == TensorType::Q5_K) std::memcpy(p + 2, &scale, 2);
  }
  const auto x = random_values(n, 12);
  std::vector<uint8_t> activations(activation_row_bytes(type, n));
  quantize_activations(type, x.data(), activations.data(), n);
  const float fast = vec_dot(type, n, w.data(), activations.data());
  const float slow = reference::vec_dot(type, n, w.data(), activations.data());
  EXPECT_NEAR(fast, slow, 1e-4 * (1.0 + std::fabs(slow))) << type_name(type);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, KernelTest, ::testing::ValuesIn(kTensorTypes),
                         [](const auto& info) { return std::string(type_name(info.param)); });
INSTANTIATE_TEST_SUITE_P(QuantizedTypes, QuantizedKernelTest,
                         ::testing::ValuesIn(quantized_types()),
                         [](const auto& info) { return std::string(type_name(info.param)); });

TEST(Kernels, SimdIsActiveOnThisMachine) {
  if (std::getenv("FLEXINFER_NO_SIMD")) GTEST_SKIP() << "FLEXINFER_NO_SIMD is set: scalar kernels by request";
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c"))
    GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C: the scalar kernels are the ones in use";
  EXPECT_TRUE(simd_kernels_active());
}

TEST_P(KernelTest, AvxVnniAndAvx2AreBitIdentical) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c") ||
      !__builtin_cpu_supports("avxvnni"))
    GTEST_SKIP() << "CPU lacks AVX-VNNI: only the AVX2 kernels can run here";
  const TensorType type = GetParam();
  const int64_t n = 4096 + 256;
  const auto w = quantized(type, random_values(n, 41));
  const auto x = random_values(n, 42);
  std::vector<uint8_t> a(activation_row_bytes(type, n)), b(a.size());
  if (activation_format(type) == ActivationFormat::Q8) {
    avx2::quantize_q8_row(x.data(), Q8Row::at(a.data(), n), n);
    avxvnni::quantize_q8_row(x.data(), Q8Row::at(b.data(), n), n);
  } else {
    quantize_activations(type, x.data(), a.data(), n);
    quantize_activations(type, x.data(), b.data(), n);
  }
  ASSERT_EQ(a, b);
  const float plain = avx2::vec_dot(type, n, w.data(), a.data());
  const float vnni = avxvnni::vec_dot(type, n, w.data(), a.data());
  EXPECT_EQ(std::memcmp(&plain, &vnni, sizeof plain), 0) << type_name(type);
}

TEST(Kernels, InterleavedQ4_0MatchesPlainRows) {
  if (!simd_kernels_active()) GTEST_SKIP() << "interleaved rows are only used with the SIMD kernels";
  const int64_t n = 4096 + 64, rows = 16;
  const uint64_t row_bytes = fi::row_bytes(TensorType::Q4_0, n);
  std::vector<uint8_t> plain(row_bytes * rows);
  for (int64_t r = 0; r < rows; ++r)
    quantize_row(TensorType::Q4_0, random_values(n, 50 + r).data(), plain.data() + r * row_bytes, n);
  std::vector<uint8_t> packed = plain;
  WeightMatrix w{TensorType::Q4_0, n, rows, row_bytes, packed.data()};
  interleave_rows(w, packed.data());
  ASSERT_TRUE(w.interleaved);
  for (int64_t r = 0; r < rows; ++r) {  // the layout change is lossless
    std::vector<BlockQ4_0> back(n / kQK);
    extract_row(w, r, back.data());
    ASSERT_EQ(std::memcmp(back.data(), plain.data() + r * row_bytes, row_bytes), 0) << "row " << r;
  }
  const size_t stride = activation_row_bytes(TensorType::Q4_0, n);
  std::vector<uint8_t> activations(stride * kMaxTokensPerDot);
  for (int t = 0; t < kMaxTokensPerDot; ++t)
    quantize_activations(TensorType::Q4_0, random_values(n, 60 + t).data(), activations.data() + t * stride, n);
  for (int tokens = 1; tokens <= kMaxTokensPerDot; ++tokens) {
    for (int64_t group = 0; group < rows / kInterleavedRows; ++group) {
      float out[kMaxTokensPerDot * kInterleavedRows];
      vec_dot_q4_0x8(n, packed.data() + group * kInterleavedRows * row_bytes, activations.data(), stride, tokens, out);
      for (int t = 0; t < tokens; ++t) {
        float alone[kInterleavedRows];
        vec_dot_q4_0x8(n, packed.data() + group * kInterleavedRows * row_bytes, activations.data() + t * stride, stride,
                       1, alone);
        for (int r = 0; r < kInterleavedRows; ++r) {
          const int64_t row = group * kInterleavedRows + r;
          const float expected = reference::vec_dot(TensorType::Q4_0, n, plain.data() + row * row_bytes,
                                                    activations.data() + t * stride);
          EXPECT_NEAR(out[t * kInterleavedRows + r], expected, 1e-4 * (1.0 + std::fabs(expected))) << "row " << row;
          EXPECT_EQ(std::memcmp(&out[t * kInterleavedRows + r], &alone[r], sizeof(float)), 0)
              << "batching must not change a token's result";
        }
      }
    }
  }
}

TEST(Kernels, AddScaledHalfMatchesReference) {
  for (int64_t n : {1, 7, 8, 64, 131}) {
    const auto values = random_values(n, 5);
    std::vector<uint16_t> row(n);
    for (int64_t i = 0; i < n; ++i) row[i] = fp32_to_fp16(values[i]);
    std::vector<float> fast(n, 0.5f), slow(n, 0.5f);
    add_scaled_f16(n, 0.3f, row.data(), fast.data());
    reference::add_scaled_f16(n, 0.3f, row.data(), slow.data());
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(fast[i], slow[i], 1e-6f);
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
