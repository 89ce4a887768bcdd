#pragma once
// Weight formats (llama.cpp's block layouts) and the CPU kernels over them.
//
// A matrix-vector product quantizes the activation vector once into the format its weight type
// pairs with (Q8 rows for Q4_0/Q8_0, Q8_K super-blocks for the K-quants, plain F32 for the float
// types), then every row is an integer-SIMD dot product against that vector.
#include <cstddef>
#include <cstdint>

#include "io/tensor_type.h"

namespace fi {

constexpr int kQK = 32;    // elements per Q4_0 / Q8_0 block
constexpr int kQKK = 256;  // elements per K-quant super-block
constexpr int kKScaleBytes = 12;

struct BlockQ4_0 {
  uint16_t d;  // fp16 scale
  uint8_t qs[kQK / 2];  // element j in the low nibble of byte j, element j+16 in the high nibble
};
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
struct BlockQ4_K {
  uint16_t d;     // super-block scale for the 6-bit sub-block scales
  uint16_t dmin;  // super-block scale for the 6-bit sub-block mins
  uint8_t scales[kKScaleBytes];
  uint8_t qs[kQKK / 2];
};
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};
// Activation format for the K-quants: float scale, 8-bit values and sums of each 16 values.
struct BlockQ8_K {
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];
};
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

// Activations paired with Q4_0/Q8_0 weights (an internal format): the n int8 values, then one
// float scale per block of 32, then per block scale x sum of its values. Contiguous float scales
// let the kernels scale several blocks with one multiply; the sums let Q4_0 multiply unsigned
// nibbles and correct for their offset of 8 once per block.
template <typename Int8, typename Float>
struct Q8RowOf {
  Int8* values;
  Float* scales;
  Float* scaled_sums;
  template <typename Bytes>
  static Q8RowOf at(Bytes* row, int64_t n) {
    auto* values = reinterpret_cast<Int8*>(row);
    auto* scales = reinterpret_cast<Float*>(values + n);
    return {values, scales, scales + n / 32};
  }
};
using Q8Row = Q8RowOf<int8_t, float>;
using ConstQ8Row = Q8RowOf<const int8_t, const float>;

enum class ActivationFormat { F32, Q8, Q8_K };
ActivationFormat activation_format(TensorType weight_type);
// Bytes needed to hold one activation row of n elements in the format paired with weight_type.
size_t activation_row_bytes(TensorType weight_type, int64_t n);

// Decodes n elements of a row (the definition of each format; scalar, used off the hot path).
void dequantize_row(TensorType type, const void* source, float* destination, int64_t n);

// Scalar reference kernels: the definition every SIMD kernel is tested against.
namespace reference {
void quantize_activations(TensorType weight_type, const float* x, void* destination, int64_t n);
float vec_dot(TensorType weight_type, int64_t n, const void* weight_row, const void* activations);
void vec_dot_tokens(TensorType weight_type, int64_t n, const void* weight_row, const void* activations,
                    size_t activation_stride, int tokens, float* out);
void add_scaled_f16(int64_t n, float weight, const uint16_t* row, float* out);
}  // namespace reference

// Dispatched kernels: AVX2/FMA/F16C when the CPU has them, otherwise the reference.
void quantize_activations(TensorType weight_type, const float* x, void* destination, int64_t n);
float vec_dot(TensorType weight_type, int64_t n, const void* weight_row, const void* activations);
// One weight row against `tokens` (at most kMaxTokensPerDot) activation rows `activation_stride`
// bytes apart: out[t]. Each token's result is bit-identical to vec_dot on that token alone.
constexpr int kMaxTokensPerDot = 4;
void vec_dot_tokens(TensorType weight_type, int64_t n, const void* weight_row, const void* activations,
                    size_t activation_stride, int tokens, float* out);
// A group of 8 interleaved Q4_0 rows (host/repack.h) against `tokens` Q8 activation rows:
// out[8 * t + r]. SIMD only: interleaving happens only when SIMD kernels are active.
void vec_dot_q4_0x8(int64_t n, const void* group, const void* activations, size_t activation_stride, int tokens,
                    float* out);
// out[i] += weight * row[i] for a half-precision row (attention over the value cache).
void add_scaled_f16(int64_t n, float weight, const uint16_t* row, float* out);
bool simd_kernels_active();
const char* kernel_isa_name();  // "AVX2+AVX-VNNI", "AVX2" or "scalar"

// Weight quantizers (for make-model and tests): round-to-nearest encoders of each format.
void quantize_row(TensorType type, const float* x, void* destination, int64_t n);

// 6-bit scale/min of sub-block j from the packed 12-byte K-quant scales.
inline void k_scale_min(int j, const uint8_t* scales, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = scales[j] & 63;
    *min = scales[j + 4] & 63;
  } else {
    *scale = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
    *min = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

}  // namespace fi
