// AVX2/FMA/F16C kernels. This file alone is compiled with those ISA flags; quant_dispatch.cpp
// calls into it only after checking the CPU.
#include <immintrin.h>

#include <cmath>

#include "host/fp16.h"
#include "host/quant.h"
#include "host/quant_avx2.h"

namespace fi::avx2 {

namespace {

inline float horizontal_sum(__m256 v) {
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
  sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
  return _mm_cvtss_f32(sum);
}

inline int horizontal_sum_i32(__m256i v) {
  __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0x4e));
  sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0xb1));
  return _mm_cvtsi128_si32(sum);
}

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// Signed int8 x signed int8 -> 8 int32 partial sums (maddubs needs one unsigned operand).
inline __m256i dot_i8(__m256i x, __m256i y) {
  const __m256i abs_x = _mm256_sign_epi8(x, x);
  const __m256i signed_y = _mm256_sign_epi8(y, x);
  return _mm256_madd_epi16(_mm256_maddubs_epi16(abs_x, signed_y), _mm256_set1_epi16(1));
}

inline __m256i unpack_nibbles(const uint8_t* bytes) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes));
  const __m128i low_mask = _mm_set1_epi8(0x0F);
  const __m128i low = _mm_and_si128(packed, low_mask);
  const __m128i high = _mm_and_si128(_mm_srli_epi16(packed, 4), low_mask);
  return _mm256_set_m128i(high, low);
}

float dot_f32(int64_t n, const float* w, const float* x) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), acc1);
  }
  float sum = horizontal_sum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) sum += w[i] * x[i];
  return sum;
}

float dot_f16(int64_t n, const uint16_t* w, const float* x) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
    const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i + 8)));
    acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), acc1);
  }
  float sum = horizontal_sum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) sum += fp16_to_fp32(w[i]) * x[i];
  return sum;
}

float dot_bf16(int64_t n, const uint16_t* w, const float* x) {
  __m256 acc0 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i widened = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
    const __m256 w0 = _mm256_castsi256_ps(_mm256_slli_epi32(widened, 16));
    acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), acc0);
  }
  float sum = horizontal_sum(acc0);
  for (; i < n; ++i) sum += bf16_to_fp32(w[i]) * x[i];
  return sum;
}

// Q4_0 x Q8: the nibbles (0..15) multiply the activations unsigned, and the offset of 8 is taken
// off per block through the activation sums, which saves the sign juggling of signed x signed.
float dot_q4_0(int64_t n, const BlockQ4_0* w, ConstQ8Row a) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m128 offset = _mm_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t blocks = n / kQK;
  int64_t b = 0;
  alignas(16) float scales[4];
  for (; b + 4 <= blocks; b += 4) {
    const __m128 weight_scales = _mm_cvtph_ps(_mm_setr_epi16(static_cast<short>(w[b].d), static_cast<short>(w[b + 1].d),
                                                             static_cast<short>(w[b + 2].d), static_cast<short>(w[b + 3].d),
                                                             0, 0, 0, 0));
    _mm_store_ps(scales, _mm_mul_ps(weight_scales, _mm_loadu_ps(a.scales + b)));
    offset = _mm_fmadd_ps(weight_scales, _mm_loadu_ps(a.scaled_sums + b), offset);
    for (int k = 0; k < 4; k += 2) {
      const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.values + (b + k) * kQK));
      const __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.values + (b + k + 1) * kQK));
      const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(unpack_nibbles(w[b + k].qs), y0), ones);
      const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(unpack_nibbles(w[b + k + 1].qs), y1), ones);
      acc0 = _mm256_fmadd_ps(_mm256_broadcast_ss(&scales[k]), _mm256_cvtepi32_ps(p0), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_broadcast_ss(&scales[k + 1]), _mm256_cvtepi32_ps(p1), acc1);
    }
  }
  float tail_offset = 0.0f;
  for (; b < blocks; ++b) {
    const float weight_scale = half_to_float(w[b].d);
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.values + b * kQK));
    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(unpack_nibbles(w[b].qs), y), ones);
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(weight_scale * a.scales[b]), _mm256_cvtepi32_ps(p), acc0);
    tail_offset += weight_scale * a.scaled_sums[b];
  }
  offset = _mm_add_ps(offset, _mm_movehl_ps(offset, offset));
  offset = _mm_add_ss(offset, _mm_movehdup_ps(offset));
  return horizontal_sum(_mm256_add_ps(acc0, acc1)) - 8.0f * (_mm_cvtss_f32(offset) + tail_offset);
}

float dot_q8_0(int64_t n, const BlockQ8_0* w, ConstQ8Row a) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  const int64_t blocks = n / kQK;
  int64_t b = 0;
  alignas(16) float scales[4];
  for (; b + 4 <= blocks; b += 4) {
    const __m128 weight_scales = _mm_cvtph_ps(_mm_setr_epi16(static_cast<short>(w[b].d), static_cast<short>(w[b + 1].d),
                                                             static_cast<short>(w[b + 2].d), static_cast<short>(w[b + 3].d),
                                                             0, 0, 0, 0));
    _mm_store_ps(scales, _mm_mul_ps(weight_scales, _mm_loadu_ps(a.scales + b)));
    for (int k = 0; k < 4; k += 2) {
      const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.values + (b + k) * kQK));
      const __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.values + (b + k + 1) * kQK));
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b + k].qs));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b + k + 1].qs));
      acc0 = _mm256_fmadd_ps(_mm256_broadcast_ss(&scales[k]), _mm256_cvtepi32_ps(dot_i8(x0, y0)), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_broadcast_ss(&scales[k + 1]), _mm256_cvtepi32_ps(dot_i8(x1, y1)), acc1);
    }
  }
  for (; b < blocks; ++b) {
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.values + b * kQK));
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs));
    const __m256 d = _mm256_set1_ps(half_to_float(w[b].d) * a.scales[b]);
    acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(x, y)), acc0);
  }
  return horizontal_sum(_mm256_add_ps(acc0, acc1));
}

// Sum over sub-blocks of mins * activation sums: the K-quant offset term.
inline int k_min_term(const uint8_t* scales, const int16_t* bsums, uint8_t sub_scales[8]) {
  int total = 0;
  for (int sub = 0; sub < 8; ++sub) {
    uint8_t min;
    k_scale_min(sub, scales, &sub_scales[sub], &min);
    total += min * (bsums[2 * sub] + bsums[2 * sub + 1]);
  }
  return total;
}

float dot_q4_k(int64_t n, const BlockQ4_K* w, const BlockQ8_K* a) {
  __m256 acc = _mm256_setzero_ps();
  float acc_min = 0.0f;
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  for (int64_t b = 0; b < n / kQKK; ++b) {
    uint8_t sub_scales[8];
    const int min_term = k_min_term(w[b].scales, a[b].bsums, sub_scales);
    __m256i sum = _mm256_setzero_si256();
    for (int chunk = 0; chunk < 4; ++chunk) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * chunk));
      const __m256i low = _mm256_and_si256(bits, low_mask);
      const __m256i high = _mm256_and_si256(_mm256_srli_epi16(bits, 4), low_mask);
      const __m256i y_low = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 64 * chunk));
      const __m256i y_high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 64 * chunk + 32));
      const __m256i p_low = _mm256_madd_epi16(_mm256_maddubs_epi16(low, y_low),
                                              _mm256_set1_epi16(sub_scales[2 * chunk]));
      const __m256i p_high = _mm256_madd_epi16(_mm256_maddubs_epi16(high, y_high),
                                               _mm256_set1_epi16(sub_scales[2 * chunk + 1]));
      sum = _mm256_add_epi32(sum, _mm256_add_epi32(p_low, p_high));
    }
    const float d = a[b].d * half_to_float(w[b].d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), acc);
    acc_min += a[b].d * half_to_float(w[b].dmin) * static_cast<float>(min_term);
  }
  return horizontal_sum(acc) - acc_min;
}

float dot_q5_k(int64_t n, const BlockQ5_K* w, const BlockQ8_K* a) {
  __m256 acc = _mm256_setzero_ps();
  float acc_min = 0.0f;
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  const __m256i one = _mm256_set1_epi8(1);
  for (int64_t b = 0; b < n / kQKK; ++b) {
    uint8_t sub_scales[8];
    const int min_term = k_min_term(w[b].scales, a[b].bsums, sub_scales);
    const __m256i high_bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qh));
    __m256i sum = _mm256_setzero_si256();
    for (int chunk = 0; chunk < 4; ++chunk) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * chunk));
      const __m128i shift_low = _mm_cvtsi32_si128(2 * chunk), shift_high = _mm_cvtsi32_si128(2 * chunk + 1);
      const __m256i fifth_low = _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(high_bits, shift_low), one), 4);
      const __m256i fifth_high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(high_bits, shift_high), one), 4);
      const __m256i low = _mm256_or_si256(_mm256_and_si256(bits, low_mask), fifth_low);
      const __m256i high = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), low_mask), fifth_high);
      const __m256i y_low = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 64 * chunk));
      const __m256i y_high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 64 * chunk + 32));
      const __m256i p_low = _mm256_madd_epi16(_mm256_maddubs_epi16(low, y_low),
                                              _mm256_set1_epi16(sub_scales[2 * chunk]));
      const __m256i p_high = _mm256_madd_epi16(_mm256_maddubs_epi16(high, y_high),
                                               _mm256_set1_epi16(sub_scales[2 * chunk + 1]));
      sum = _mm256_add_epi32(sum, _mm256_add_epi32(p_low, p_high));
    }
    const float d = a[b].d * half_to_float(w[b].d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), acc);
    acc_min += a[b].d * half_to_float(w[b].dmin) * static_cast<float>(min_term);
  }
  return horizontal_sum(acc) - acc_min;
}

float dot_q6_k(int64_t n, const BlockQ6_K* w, const BlockQ8_K* a) {
  float total = 0.0f;
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  const __m256i two_bits = _mm256_set1_epi8(3);
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const BlockQ6_K& block = w[b];
    int offset_term = 0;  // codes are stored +32: subtract 32 * sum(scale * activation sums)
    for (int g = 0; g < 16; ++g) offset_term += block.scales[g] * a[b].bsums[g];
    __m256i sum = _mm256_setzero_si256();
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = block.ql + 64 * half;
      const __m256i q_low0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i q_low1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i q_high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.qh + 32 * half));
      const __m256i codes[4] = {
          _mm256_or_si256(_mm256_and_si256(q_low0, low_mask),
                          _mm256_slli_epi16(_mm256_and_si256(q_high, two_bits), 4)),
          _mm256_or_si256(_mm256_and_si256(q_low1, low_mask),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q_high, 2), two_bits), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q_low0, 4), low_mask),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q_high, 4), two_bits), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q_low1, 4), low_mask),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q_high, 6), two_bits), 4)),
      };
      for (int quarter = 0; quarter < 4; ++quarter) {
        const int group = 8 * half + 2 * quarter;
        const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 128 * half + 32 * quarter));
        const __m256i scales = _mm256_setr_m128i(_mm_set1_epi16(block.scales[group]),
                                                 _mm_set1_epi16(block.scales[group + 1]));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(codes[quarter], y), scales));
      }
    }
    const int isum = horizontal_sum_i32(sum) - 32 * offset_term;
    total += half_to_float(block.d) * a[b].d * static_cast<float>(isum);
  }
  return total;
}

inline float max_abs(const float* x, int n) {
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps();
  for (int j = 0; j < n; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign_mask, _mm256_loadu_ps(x + j)));
  __m128 r = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  r = _mm_max_ps(r, _mm_movehl_ps(r, r));
  r = _mm_max_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

// Rounds x*id to the nearest int8 (ties to even, like the reference's nearbyint) for 32 values.
inline __m256i quantize_32(const float* x, float id) {
  const __m256 scale = _mm256_set1_ps(id);
  __m256i q[4];
  for (int k = 0; k < 4; ++k)
    q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), scale),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  const __m256i q16a = _mm256_packs_epi32(q[0], q[1]);
  const __m256i q16b = _mm256_packs_epi32(q[2], q[3]);
  const __m256i q8 = _mm256_packs_epi16(q16a, q16b);
  // pack works within 128-bit lanes: restore element order.
  return _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

}  // namespace

void quantize_q8_row(const float* x, Q8Row out, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float amax = max_abs(x + b * kQK, kQK);
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    out.scales[b] = _cvtsh_ss(_cvtss_sh(amax / 127.0f, _MM_FROUND_TO_NEAREST_INT));  // fp16 like llama.cpp
    const __m256i q = quantize_32(x + b * kQK, id);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.values + b * kQK), q);
    const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
    out.scaled_sums[b] = out.scales[b] * static_cast<float>(horizontal_sum_i32(sums));
  }
}

void quantize_q8_k(const float* x, BlockQ8_K* out, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const float* v = x + b * kQKK;
    const float amax = max_abs(v, kQKK);
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    out[b].d = amax / 127.0f;
    for (int k = 0; k < kQKK / 32; ++k) {
      const __m256i q = quantize_32(v + 32 * k, id);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].qs + 32 * k), q);
      // Sums of each 16 values: widen to int16 and add pairs down to two totals.
      const __m256i wide_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q));
      const __m256i wide_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q, 1));
      const __m256i sums_lo = _mm256_madd_epi16(wide_lo, _mm256_set1_epi16(1));
      const __m256i sums_hi = _mm256_madd_epi16(wide_hi, _mm256_set1_epi16(1));
      out[b].bsums[2 * k] = static_cast<int16_t>(horizontal_sum_i32(sums_lo));
      out[b].bsums[2 * k + 1] = static_cast<int16_t>(horizontal_sum_i32(sums_hi));
    }
  }
}

float vec_dot(TensorType type, int64_t n, const void* weight_row, const void* activations) {
  const auto* x = static_cast<const float*>(activations);
  switch (type) {
    case TensorType::F32: return dot_f32(n, static_cast<const float*>(weight_row), x);
    case TensorType::F16: return dot_f16(n, static_cast<const uint16_t*>(weight_row), x);
    case TensorType::BF16: return dot_bf16(n, static_cast<const uint16_t*>(weight_row), x);
    case TensorType::Q4_0:
      return dot_q4_0(n, static_cast<const BlockQ4_0*>(weight_row), ConstQ8Row::at(activations, n));
    case TensorType::Q8_0:
      return dot_q8_0(n, static_cast<const BlockQ8_0*>(weight_row), ConstQ8Row::at(activations, n));
    case TensorType::Q4_K:
      return dot_q4_k(n, static_cast<const BlockQ4_K*>(weight_row), static_cast<const BlockQ8_K*>(activations));
    case TensorType::Q5_K:
      return dot_q5_k(n, static_cast<const BlockQ5_K*>(weight_row), static_cast<const BlockQ8_K*>(activations));
    case TensorType::Q6_K:
      return dot_q6_k(n, static_cast<const BlockQ6_K*>(weight_row), static_cast<const BlockQ8_K*>(activations));
  }
  return 0.0f;
}

void add_scaled_f16(int64_t n, float weight, const uint16_t* row, float* out) {
  const __m256 scale = _mm256_set1_ps(weight);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i)));
    _mm256_storeu_ps(out + i, _mm256_fmadd_ps(scale, v, _mm256_loadu_ps(out + i)));
  }
  for (; i < n; ++i) out[i] += weight * fp16_to_fp32(row[i]);
}

}  // namespace fi::avx2
