#pragma once
// Rows of arbitrary block bytes for the kernel tests: every scale, min and code bit pattern a file
// may hold, with sane fp16 scales (random halves are often infinite or NaN).
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <random>
#include <vector>

#include "host/kernels/fp16.h"
#include "host/kernels/quant.h"

namespace fi::test {

// Offsets of the fp16 scales (and minimums) in a block of each quantized type.
inline std::vector<size_t> half_fields(TensorType type) {
  switch (type) {
    case TensorType::Q4_0: return {offsetof(BlockQ4_0, d)};
    case TensorType::Q4_1: return {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m)};
    case TensorType::Q5_0: return {offsetof(BlockQ5_0, d)};
    case TensorType::Q5_1: return {offsetof(BlockQ5_1, d), offsetof(BlockQ5_1, m)};
    case TensorType::Q8_0: return {offsetof(BlockQ8_0, d)};
    case TensorType::Q2_K: return {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)};
    case TensorType::Q3_K: return {offsetof(BlockQ3_K, d)};
    case TensorType::Q4_K: return {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)};
    case TensorType::Q5_K: return {offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin)};
    case TensorType::Q6_K: return {offsetof(BlockQ6_K, d)};
    case TensorType::IQ4_NL: return {offsetof(BlockIQ4_NL, d)};
    case TensorType::IQ4_XS: return {offsetof(BlockIQ4_XS, d)};
    default: ADD_FAILURE() << "no fp16 fields known for " << type_name(type); return {};
  }
}

// `rows` rows of `n` elements of a quantized type: random bytes, fp16 scales of either sign.
inline std::vector<uint8_t> random_block_bytes(TensorType type, int64_t n, int64_t rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> w(row_bytes(type, static_cast<uint64_t>(n)) * static_cast<uint64_t>(rows));
  for (uint8_t& byte : w) byte = static_cast<uint8_t>(rng());
  const uint32_t block_bytes = type_traits(type).block_bytes;
  for (size_t block = 0; block < w.size() / block_bytes; ++block)
    for (size_t field : half_fields(type)) {
      const float magnitude = 0.001f * static_cast<float>(1 + rng() % 100);
      const uint16_t half = fp32_to_fp16(rng() % 4 == 0 ? -magnitude : magnitude);
      std::memcpy(w.data() + block * block_bytes + field, &half, 2);
    }
  return w;
}

}  // namespace fi::test
