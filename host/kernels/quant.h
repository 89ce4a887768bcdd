#pragma once
// Weight formats (llama.cpp's block layouts) and the CPU kernels over them.
//
// A matrix-vector product quantizes the activation vector once into the format its weight type
// pairs with (Q8 rows for the 32-element block types, Q8_K super-blocks for the 256-element
// K-quant and IQ4_XS super-blocks, plain F32 for the float types), then every row is an
// integer-SIMD dot product against that vector.
#include <cstddef>
#include <cstdint>

#include "io/tensor_type.h"

namespace fi {

constexpr int kQK = 32;    // elements per Q4_0 / Q8_0 / Q4_1 / Q5_0 / Q5_1 / IQ4_NL block
constexpr int kQKK = 256;  // elements per K-quant / IQ4_XS super-block
constexpr int kKScaleBytes = 12;

struct BlockQ4_0 {
  uint16_t d;  // fp16 scale
  uint8_t qs[kQK / 2];  // element j in the low nibble of byte j, element j+16 in the high nibble
};
struct BlockQ4_1 {
  uint16_t d;  // fp16 scale: value = d * code + m
  uint16_t m;  // fp16 minimum
  uint8_t qs[kQK / 2];  // as Q4_0
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];  // bit j of the little-endian word: fifth bit of element j; value = d * (code - 16)
  uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
struct BlockIQ4_NL {
  uint16_t d;  // value = d * kIQ4Values[code], codes as Q4_0's nibbles
  uint8_t qs[kQK / 2];
};
// 16 sub-blocks of 16: value = d * (scale & 15) * code - dmin * (scale >> 4). Element
// 128h + 32j + l is bits 2j..2j+1 of qs[32h + l], in sub-block 8h + 2j + l / 16.
struct BlockQ2_K {
  uint8_t scales[kQKK / 16];
  uint8_t qs[kQKK / 4];
  uint16_t d;
  uint16_t dmin;
};
// 16 sub-blocks of 16 with 6-bit signed scales (stored + 32, packed in 12 bytes): value = d * scale
// * (code - 4), the code's low 2 bits as Q2_K's and its third bit in bit 4h + j of hmask[l].
struct BlockQ3_K {
  uint8_t hmask[kQKK / 8];
  uint8_t qs[kQKK / 4];
  uint8_t scales[kKScaleBytes];
  uint16_t d;
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
// 8 sub-blocks of 32 with 6-bit signed scales (stored + 32: low 4 bits in scales_l, nibble per
// sub-block; high 2 bits in scales_h): value = d * scale * kIQ4Values[code], codes as IQ4_NL's.
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[kQKK / 64];
  uint8_t qs[kQKK / 2];
};
// Activation format for the super-block types: float scale, 8-bit values and sums of each 16 values.
struct BlockQ8_K {
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];
};

// The non-linear 4-bit values of IQ4_NL and IQ4_XS (llama.cpp's kvalues_iq4nl).
inline constexpr int8_t kIQ4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// The blocks as io/tensor_type.h's list gives their sizes.
template <TensorType T>
struct BlockOf;
template <> struct BlockOf<TensorType::Q4_0> { using type = BlockQ4_0; };
template <> struct BlockOf<TensorType::Q4_1> { using type = BlockQ4_1; };
template <> struct BlockOf<TensorType::Q5_0> { using type = BlockQ5_0; };
template <> struct BlockOf<TensorType::Q5_1> { using type = BlockQ5_1; };
template <> struct BlockOf<TensorType::Q8_0> { using type = BlockQ8_0; };
template <> struct BlockOf<TensorType::Q2_K> { using type = BlockQ2_K; };
template <> struct BlockOf<TensorType::Q3_K> { using type = BlockQ3_K; };
template <> struct BlockOf<TensorType::Q4_K> { using type = BlockQ4_K; };
template <> struct BlockOf<TensorType::Q5_K> { using type = BlockQ5_K; };
template <> struct BlockOf<TensorType::Q6_K> { using type = BlockQ6_K; };
template <> struct BlockOf<TensorType::IQ4_NL> { using type = BlockIQ4_NL; };
template <> struct BlockOf<TensorType::IQ4_XS> { using type = BlockIQ4_XS; };
template <TensorType T>
constexpr bool block_matches_traits() {
  if constexpr (is_float_type(T)) return true;
  else return sizeof(typename BlockOf<T>::type) == find_traits(T)->block_bytes;
}
#define FI_CHECK_BLOCK_SIZE(name, id, elements, bytes) \
  static_assert(block_matches_traits<TensorType::name>(), "block struct of " #name " disagrees with its traits");
FI_TENSOR_TYPES(FI_CHECK_BLOCK_SIZE)
#undef FI_CHECK_BLOCK_SIZE
static_assert(sizeof(BlockQ8_K) == 292);

// Activations paired with the 32-element block types (an internal format): the n int8 values,
// then one float scale per block of 32, then per block scale x sum of its values, then per block
// the sum itself. Contiguous float scales let the kernels scale several blocks with one multiply;
// the scaled sums let unsigned codes multiply and their offsets (Q4_0's 8, Q5_0's 16, Q4_1's and
// Q5_1's minimum) come off once per block in float; the integer sums let signed codes multiply as
// unsigned ones (code + 128) and the offset come off exactly.
template <typename Int8, typename Float, typename Int16>
struct Q8RowOf {
  Int8* values;
  Float* scales;
  Float* scaled_sums;
  Int16* sums;
  template <typename Bytes>
  static Q8RowOf at(Bytes* row, int64_t n) {
    auto* values = reinterpret_cast<Int8*>(row);
    auto* scales = reinterpret_cast<Float*>(values + n);
    return {values, scales, scales + n / 32, reinterpret_cast<Int16*>(scales + 2 * (n / 32))};
  }
};
using Q8Row = Q8RowOf<int8_t, float, int16_t>;
using ConstQ8Row = Q8RowOf<const int8_t, const float, const int16_t>;

enum class ActivationFormat { F32, Q8, Q8_K };
constexpr ActivationFormat activation_format(TensorType weight_type) {
  const std::optional<TypeTraits> traits = find_traits(weight_type);
  const uint32_t elements = traits ? traits->block_elements : 1;
  return elements == 1 ? ActivationFormat::F32 : elements == kQK ? ActivationFormat::Q8 : ActivationFormat::Q8_K;
}
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
void vec_dot_rows(TensorType weight_type, int64_t n, const void* weight_rows, size_t row_stride, int64_t rows,
                  const void* activations, size_t activation_stride, int tokens, float* out, size_t out_stride);
void attention_scores_f16(int64_t n, const uint16_t* keys, size_t row_stride, int64_t positions, const float* queries,
                          size_t query_stride, int heads, float* scores, size_t score_stride);
void attention_values_f16(int64_t n, const uint16_t* values, size_t row_stride, int64_t positions, const float* weights,
                          size_t weight_stride, int heads, float* out, size_t out_stride);
void attention_softmax(float* scores, int64_t n, float scale);
uint64_t sum_words(const uint64_t* words, int64_t count);
}  // namespace reference

// Dispatched kernels: AVX-512, AVX2+AVX-VNNI or AVX2 (with FMA and F16C) as the CPU allows, all
// bit-identical; otherwise the reference.
void quantize_activations(TensorType weight_type, const float* x, void* destination, int64_t n);
float vec_dot(TensorType weight_type, int64_t n, const void* weight_row, const void* activations);
// One weight row against `tokens` (at most kMaxTokensPerDot) activation rows `activation_stride`
// bytes apart: out[t]. Each token's result is bit-identical to vec_dot on that token alone.
constexpr int kMaxTokensPerDot = 4;
void vec_dot_tokens(TensorType weight_type, int64_t n, const void* weight_row, const void* activations,
                    size_t activation_stride, int tokens, float* out);
// `rows` weight rows `row_stride` bytes apart against the same activations: out[t * out_stride + r],
// each vec_dot_tokens's bits. One call for a run of plain rows: a dispatched call per row made
// experts computed as read 5-9% slower (their rows are 768 and 2048 columns).
void vec_dot_rows(TensorType weight_type, int64_t n, const void* weight_rows, size_t row_stride, int64_t rows,
                  const void* activations, size_t activation_stride, int tokens, float* out, size_t out_stride);
// `groups` consecutive groups of 8 interleaved rows (host/kernels/repack.h) against `tokens`
// activation rows: out[t * out_stride + 8 * g + r]. Each row's result is the same whatever the
// number of groups or tokens evaluated together. SIMD only: interleaving happens only when SIMD
// kernels are active. `groups_after`: how many groups of the same matrix follow these in memory
// (usually computed next, by this thread); the kernels request the first of them while computing
// these, nothing more.
void vec_dot_interleaved(TensorType weight_type, int64_t n, const void* groups, int64_t group_count,
                         const void* activations, size_t activation_stride, int tokens, float* out, size_t out_stride,
                         int64_t groups_after = 0);
// Attention over a half-precision cache for `heads` query heads that share one KV head: each
// cached row is converted once for all of them (per head and row, eight of Qwen3-30B-A3B's 32
// heads read the same row). `positions` rows of n halves, `row_stride` halves apart.
// scores[h * score_stride + p] = row p . queries[h * query_stride ...], each bit-identical to
// vec_dot(F16, n, row p, query h).
void attention_scores_f16(int64_t n, const uint16_t* keys, size_t row_stride, int64_t positions, const float* queries,
                          size_t query_stride, int heads, float* scores, size_t score_stride);
// out[h * out_stride + i] += weights[h * weight_stride + p] * row p [i], the positions in order:
// each output's bits are the same however the heads and positions are split between calls.
void attention_values_f16(int64_t n, const uint16_t* values, size_t row_stride, int64_t positions, const float* weights,
                          size_t weight_stride, int heads, float* out, size_t out_stride);
// scores[i] = softmax(scale * scores)[i] over n finite scores. The SIMD kernels' exponential is a
// polynomial within 2 ulp of expf, exactly 0 below FLT_MIN (where a weight no longer matters), the
// same bits in every variant; the reference uses std::exp.
void attention_softmax(float* scores, int64_t n, float scale);
// The sum of `count` 64-bit words modulo 2^64 (any order gives it): a streaming read through the
// widest loads the CPU has, for measuring memory bandwidth. Plain 64-bit loads read 10-15% slower
// from DRAM on the 2-core AMD EPYC development machine, which made the limit the engine is
// measured against too easy.
uint64_t sum_words(const uint64_t* words, int64_t count);
bool simd_kernels_active();
const char* kernel_isa_name();  // "AVX-512+VNNI", "AVX-512", "AVX2+AVX-VNNI", "AVX2" or "scalar"

// Weight quantizers (for make-model and tests): round-to-nearest encoders of each format.
void quantize_row(TensorType type, const float* x, void* destination, int64_t n);

// 6-bit scale/min of sub-block j from the packed 12-byte Q4_K/Q5_K scales.
inline void k_scale_min(int j, const uint8_t* scales, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = scales[j] & 63;
    *min = scales[j + 4] & 63;
  } else {
    *scale = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
    *min = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}
// Signed 6-bit scale of Q3_K sub-block j (0..15) from its 12 packed bytes: low 4 bits in the
// nibbles of bytes 0..7, high 2 bits in bytes 8..11.
inline int q3_k_scale(int j, const uint8_t* scales) {
  const int low = (scales[j % 8] >> (4 * (j / 8))) & 0xF;
  const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}
// Signed 6-bit scale of IQ4_XS sub-block j (0..7).
inline int iq4_xs_scale(int j, const BlockIQ4_XS& block) {
  const int low = (block.scales_l[j / 2] >> (4 * (j % 2))) & 0xF;
  const int high = (block.scales_h >> (2 * j)) & 3;
  return (low | (high << 4)) - 32;
}

}  // namespace fi
