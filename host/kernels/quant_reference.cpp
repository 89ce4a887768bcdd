// Scalar reference kernels and weight quantizers, one Format<T> per type of io/tensor_type.h's
// list. Clarity over speed: SIMD kernels are tested against these.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "host/kernels/fp16.h"
#include "host/kernels/quant.h"
#include "io/error.h"

namespace fi {

size_t activation_row_bytes(TensorType weight_type, int64_t n) {
  switch (activation_format(weight_type)) {
    case ActivationFormat::Q8: {
      // Rounded up so that the next row's floats are aligned too.
      const size_t bytes = static_cast<size_t>(n) + static_cast<size_t>(n / kQK) * (2 * sizeof(float) + sizeof(int16_t));
      return (bytes + sizeof(float) - 1) / sizeof(float) * sizeof(float);
    }
    case ActivationFormat::Q8_K: return static_cast<size_t>(n / kQKK) * sizeof(BlockQ8_K);
    default: return static_cast<size_t>(n) * sizeof(float);
  }
}

namespace {

int nearest(float x) { return static_cast<int>(std::nearbyint(x)); }

// Element codes (unsigned, as stored) of each format.
int q4_0_code(const uint8_t* qs, int e) { return e < 16 ? (qs[e] & 0xF) : (qs[e - 16] >> 4); }

int q5_code(const uint8_t* qs, const uint8_t* qh, int e) {
  uint32_t high;
  std::memcpy(&high, qh, 4);
  return q4_0_code(qs, e) | static_cast<int>(((high >> e) & 1) << 4);
}

int q2_k_code(const BlockQ2_K& block, int e) {
  const int half = e / 128, j = e % 128 / 32, l = e % 32;
  return (block.qs[32 * half + l] >> (2 * j)) & 3;
}

int q3_k_code(const BlockQ3_K& block, int e) {  // 0..7; the value is code - 4
  const int half = e / 128, j = e % 128 / 32, l = e % 32;
  const int low = (block.qs[32 * half + l] >> (2 * j)) & 3;
  return low | (((block.hmask[l] >> (4 * half + j)) & 1) << 2);
}

int q4_k_code(const BlockQ4_K& block, int e) {
  const int sub = e / 32, l = e % 32;
  const uint8_t byte = block.qs[(sub / 2) * 32 + l];
  return sub % 2 ? (byte >> 4) : (byte & 0xF);
}

int q5_k_code(const BlockQ5_K& block, int e) {
  const int sub = e / 32, l = e % 32;
  const uint8_t byte = block.qs[(sub / 2) * 32 + l];
  const int low = sub % 2 ? (byte >> 4) : (byte & 0xF);
  return low | (((block.qh[l] >> sub) & 1) << 4);
}

int q6_k_code(const BlockQ6_K& block, int e) {  // 0..63; the value is code - 32
  const int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
  const uint8_t low_byte = block.ql[64 * half + l + (quarter & 1) * 32];
  const int low = quarter < 2 ? (low_byte & 0xF) : (low_byte >> 4);
  const int high = (block.qh[32 * half + l] >> (2 * quarter)) & 3;
  return low | (high << 4);
}

int iq4_xs_code(const BlockIQ4_XS& block, int e) { return q4_0_code(block.qs + 16 * (e / 32), e % 32); }

// Index of the non-linear value nearest to x (the table is sorted).
int nearest_iq4(float x) {
  int best = 0;
  for (int k = 1; k < 16; ++k)
    if (std::fabs(x - kIQ4Values[k]) < std::fabs(x - kIQ4Values[best])) best = k;
  return best;
}

// The signed value of largest magnitude (the first of equal magnitudes).
float extreme_of(const float* x, int n) {
  float extreme = 0.0f;
  for (int j = 0; j < n; ++j)
    if (std::fabs(x[j]) > std::fabs(extreme)) extreme = x[j];
  return extreme;
}

void pack_nibbles(const int* codes, uint8_t* qs) {  // element j low, j + 16 high
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(codes[j] | (codes[j + 16] << 4));
}

// ---- float types ------------------------------------------------------------------------------

template <TensorType T>
float float_element(const void* row, int64_t i) {
  const auto* bytes = static_cast<const uint8_t*>(row);
  if constexpr (T == TensorType::F32) {
    float value;
    std::memcpy(&value, bytes + i * 4, 4);
    return value;
  } else {
    uint16_t half;
    std::memcpy(&half, bytes + i * 2, 2);
    return T == TensorType::F16 ? fp16_to_fp32(half) : bf16_to_fp32(half);
  }
}

template <TensorType T>
struct FloatFormat {
  static void dequantize(const void* source, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = float_element<T>(source, i);
  }
  static void quantize(const float* x, void* destination, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      // Byte copies: a destination inside a packed row need not be aligned for its element type.
      auto* element = static_cast<uint8_t*>(destination) + i * static_cast<int64_t>(T == TensorType::F32 ? 4 : 2);
      if constexpr (T == TensorType::F32) std::memcpy(element, &x[i], 4);
      else {
        const uint16_t half = T == TensorType::F16 ? fp32_to_fp16(x[i]) : fp32_to_bf16(x[i]);
        std::memcpy(element, &half, 2);
      }
    }
  }
  static float dot(int64_t n, const void* w, const void* activations) {
    const auto* x = static_cast<const float*>(activations);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(float_element<T>(w, i)) * x[i];
    return static_cast<float>(sum);
  }
};

template <TensorType T>
struct Format;
template <> struct Format<TensorType::F32> : FloatFormat<TensorType::F32> {};
template <> struct Format<TensorType::F16> : FloatFormat<TensorType::F16> {};
template <> struct Format<TensorType::BF16> : FloatFormat<TensorType::BF16> {};

// ---- 32-element blocks, against Q8 activation rows ----------------------------------------------
//
// Each is value = d * (signed integer), plus a minimum m for Q4_1 and Q5_1; the dot product of a
// block is d * a_scale * sum of the integer products (+ m * a_scale * sum of the activations).

template <TensorType T, typename Block, bool kMinimum = false>
struct SmallBlockFormat {
  static void dequantize(const void* source, float* y, int64_t n) {
    const auto* blocks = static_cast<const Block*>(source);
    for (int64_t b = 0; b < n / kQK; ++b) {
      const float d = fp16_to_fp32(blocks[b].d);
      for (int e = 0; e < kQK; ++e) {
        y[b * kQK + e] = d * static_cast<float>(Format<T>::value(blocks[b], e));
        if constexpr (kMinimum) y[b * kQK + e] += fp16_to_fp32(blocks[b].m);
      }
    }
  }
  static float dot(int64_t n, const void* w, const void* activations) {
    const auto* blocks = static_cast<const Block*>(w);
    const ConstQ8Row a = ConstQ8Row::at(activations, n);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / kQK; ++b) {
      int isum = 0;
      for (int e = 0; e < kQK; ++e) isum += Format<T>::value(blocks[b], e) * a.values[b * kQK + e];
      sum += fp16_to_fp32(blocks[b].d) * a.scales[b] * static_cast<float>(isum);
      if constexpr (kMinimum) sum += fp16_to_fp32(blocks[b].m) * a.scaled_sums[b];
    }
    return sum;
  }
};

template <>
struct Format<TensorType::Q8_0> : SmallBlockFormat<TensorType::Q8_0, BlockQ8_0> {
  static int value(const BlockQ8_0& block, int e) { return block.qs[e]; }
  static void quantize(const float* x, void* destination, int64_t n) {
    auto* out = static_cast<BlockQ8_0*>(destination);
    for (int64_t b = 0; b < n / kQK; ++b) {
      float amax = 0.0f;
      for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[b * kQK + j]));
      const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
      out[b].d = fp32_to_fp16(amax / 127.0f);
      for (int j = 0; j < kQK; ++j) out[b].qs[j] = static_cast<int8_t>(nearest(x[b * kQK + j] * id));
    }
  }
};

// Symmetric 4- or 5-bit codes: the value of largest magnitude maps to the lowest code.
template <int kOffset>
void quantize_symmetric(const float* v, uint16_t* d_out, int* codes) {
  const float d = extreme_of(v, kQK) / -static_cast<float>(kOffset);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  *d_out = fp32_to_fp16(d);
  for (int j = 0; j < kQK; ++j) codes[j] = std::clamp(nearest(v[j] * id) + kOffset, 0, 2 * kOffset - 1);
}

// Codes 0..levels between the block's minimum and maximum.
void quantize_asymmetric(const float* v, int levels, uint16_t* d_out, uint16_t* m_out, int* codes) {
  const float lo = *std::min_element(v, v + kQK), hi = *std::max_element(v, v + kQK);
  *d_out = fp32_to_fp16((hi - lo) / static_cast<float>(levels));
  *m_out = fp32_to_fp16(lo);
  const float d = fp16_to_fp32(*d_out), m = fp16_to_fp32(*m_out);
  for (int j = 0; j < kQK; ++j) codes[j] = d > 0.0f ? std::clamp(nearest((v[j] - m) / d), 0, levels) : 0;
}

template <>
struct Format<TensorType::Q4_0> : SmallBlockFormat<TensorType::Q4_0, BlockQ4_0> {
  static int value(const BlockQ4_0& block, int e) { return q4_0_code(block.qs, e) - 8; }
  static void quantize(const float* x, void* destination, int64_t n) {
    auto* blocks = static_cast<BlockQ4_0*>(destination);
    for (int64_t b = 0; b < n / kQK; ++b) {
      int codes[kQK];
      quantize_symmetric<8>(x + b * kQK, &blocks[b].d, codes);
      pack_nibbles(codes, blocks[b].qs);
    }
  }
};

template <>
struct Format<TensorType::Q4_1> : SmallBlockFormat<TensorType::Q4_1, BlockQ4_1, true> {
  static int value(const BlockQ4_1& block, int e) { return q4_0_code(block.qs, e); }
  static void quantize(const float* x, void* destination, int64_t n) {
    auto* blocks = static_cast<BlockQ4_1*>(destination);
    for (int64_t b = 0; b < n / kQK; ++b) {
      int codes[kQK];
      quantize_asymmetric(x + b * kQK, 15, &blocks[b].d, &blocks[b].m, codes);
      pack_nibbles(codes, blocks[b].qs);
    }
  }
};

void pack_fifth_bits(const int* codes, uint8_t* qh) {
  uint32_t high = 0;
  for (int j = 0; j < kQK; ++j) high |= static_cast<uint32_t>(codes[j] >> 4) << j;
  std::memcpy(qh, &high, 4);
}

template <>
struct Format<TensorType::Q5_0> : SmallBlockFormat<TensorType::Q5_0, BlockQ5_0> {
  static int value(const BlockQ5_0& block, int e) { return q5_code(block.qs, block.qh, e) - 16; }
  static void quantize(const float* x, void* destination, int64_t n) {
    auto* blocks = static_cast<BlockQ5_0*>(destination);
    for (int64_t b = 0; b < n / kQK; ++b) {
      int codes[kQK], low[kQK];
      quantize_symmetric<16>(x + b * kQK, &blocks[b].d, codes);
      for (int j = 0; j < kQK; ++j) low[j] = codes[j] & 0xF;
      pack_nibbles(low, blocks[b].qs);
      pack_fifth_bits(codes, blocks[b].qh);
    }
  }
};

template <>
struct Format<TensorType::Q5_1> : SmallBlockFormat<TensorType::Q5_1, BlockQ5_1, true> {
  static int value(const BlockQ5_1& block, int e) { return q5_code(block.qs, block.qh, e); }
  static void quantize(const float* x, void* destination, int64_t n) {
    auto* blocks = static_cast<BlockQ5_1*>(destination);
    for (int64_t b = 0; b < n / kQK; ++b) {
      int codes[kQK], low[kQK];
      quantize_asymmetric(x + b * kQK, 31, &blocks[b].d, &blocks[b].m, codes);
      for (int j = 0; j < kQK; ++j) low[j] = codes[j] & 0xF;
      pack_nibbles(low, blocks[b].qs);
      pack_fifth_bits(codes, blocks[b].qh);
    }
  }
};

// The scale maps the value of largest magnitude onto the table's end value -127, then every value
// takes the nearest table entry.
void quantize_iq4(const float* v, int n, float d, int* codes) {
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < n; ++j) codes[j] = nearest_iq4(v[j] * id);
}

template <>
struct Format<TensorType::IQ4_NL> : SmallBlockFormat<TensorType::IQ4_NL, BlockIQ4_NL> {
  static int value(const BlockIQ4_NL& block, int e) { return kIQ4Values[q4_0_code(block.qs, e)]; }
  static void quantize(const float* x, void* destination, int64_t n) {
    auto* blocks = static_cast<BlockIQ4_NL*>(destination);
    for (int64_t b = 0; b < n / kQK; ++b) {
      blocks[b].d = fp32_to_fp16(extreme_of(x + b * kQK, kQK) / -127.0f);
      int codes[kQK];
      quantize_iq4(x + b * kQK, kQK, fp16_to_fp32(blocks[b].d), codes);
      pack_nibbles(codes, blocks[b].qs);
    }
  }
};

// ---- 256-element super-blocks, against Q8_K activations -------------------------------------------

template <typename Block>
const Block* blocks_of(const void* row) {
  return static_cast<const Block*>(row);
}
const BlockQ8_K* q8_k_of(const void* activations) { return static_cast<const BlockQ8_K*>(activations); }

template <>
struct Format<TensorType::Q2_K> {
  static void dequantize(const void* source, float* y, int64_t n) {
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const BlockQ2_K& block = blocks_of<BlockQ2_K>(source)[b];
      const float d = fp16_to_fp32(block.d), dmin = fp16_to_fp32(block.dmin);
      for (int e = 0; e < kQKK; ++e) {
        const int scale = block.scales[e / 16] & 0xF, min = block.scales[e / 16] >> 4;
        y[b * kQKK + e] = d * static_cast<float>(scale) * static_cast<float>(q2_k_code(block, e)) -
                          dmin * static_cast<float>(min);
      }
    }
  }
  static float dot(int64_t n, const void* w, const void* activations) {
    float sum = 0.0f;
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const BlockQ2_K& block = blocks_of<BlockQ2_K>(w)[b];
      const BlockQ8_K& a = q8_k_of(activations)[b];
      int isum = 0, msum = 0;
      for (int sub = 0; sub < 16; ++sub) {
        int dot = 0;
        for (int l = 0; l < 16; ++l) dot += q2_k_code(block, 16 * sub + l) * a.qs[16 * sub + l];
        isum += (block.scales[sub] & 0xF) * dot;
        msum += (block.scales[sub] >> 4) * a.bsums[sub];
      }
      sum += a.d * (fp16_to_fp32(block.d) * static_cast<float>(isum) - fp16_to_fp32(block.dmin) * static_cast<float>(msum));
    }
    return sum;
  }
  // Per sub-block of 16 a scale and a min (the negated minimum, at least 0), both re-quantized to
  // 4 bits against the block's d and dmin.
  static void quantize(const float* x, void* destination, int64_t n) {
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const float* v = x + b * kQKK;
      BlockQ2_K& block = static_cast<BlockQ2_K*>(destination)[b];
      std::memset(&block, 0, sizeof block);
      float sub_scale[16], sub_min[16];
      for (int sub = 0; sub < 16; ++sub) {
        const float lo = std::min(0.0f, *std::min_element(v + 16 * sub, v + 16 * sub + 16));
        const float hi = *std::max_element(v + 16 * sub, v + 16 * sub + 16);
        sub_scale[sub] = (hi - lo) / 3.0f;
        sub_min[sub] = -lo;
      }
      block.d = fp32_to_fp16(*std::max_element(sub_scale, sub_scale + 16) / 15.0f);
      block.dmin = fp32_to_fp16(*std::max_element(sub_min, sub_min + 16) / 15.0f);
      const float d = fp16_to_fp32(block.d), dmin = fp16_to_fp32(block.dmin);
      for (int sub = 0; sub < 16; ++sub) {
        const int ls = d > 0 ? std::clamp(nearest(sub_scale[sub] / d), 0, 15) : 0;
        const int lm = dmin > 0 ? std::clamp(nearest(sub_min[sub] / dmin), 0, 15) : 0;
        block.scales[sub] = static_cast<uint8_t>(ls | (lm << 4));
        for (int l = 0; l < 16; ++l) {
          const int e = 16 * sub + l;
          const int code = ls > 0 ? std::clamp(nearest((v[e] + dmin * lm) / (d * ls)), 0, 3) : 0;
          block.qs[32 * (e / 128) + e % 32] |= static_cast<uint8_t>(code << (2 * (e % 128 / 32)));
        }
      }
    }
  }
};

template <>
struct Format<TensorType::Q3_K> {
  static void dequantize(const void* source, float* y, int64_t n) {
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const BlockQ3_K& block = blocks_of<BlockQ3_K>(source)[b];
      const float d = fp16_to_fp32(block.d);
      for (int e = 0; e < kQKK; ++e)
        y[b * kQKK + e] = d * static_cast<float>(q3_k_scale(e / 16, block.scales)) *
                          static_cast<float>(q3_k_code(block, e) - 4);
    }
  }
  static float dot(int64_t n, const void* w, const void* activations) {
    float sum = 0.0f;
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const BlockQ3_K& block = blocks_of<BlockQ3_K>(w)[b];
      const BlockQ8_K& a = q8_k_of(activations)[b];
      int isum = 0;
      for (int sub = 0; sub < 16; ++sub) {
        int dot = 0;
        for (int l = 0; l < 16; ++l) dot += (q3_k_code(block, 16 * sub + l) - 4) * a.qs[16 * sub + l];
        isum += q3_k_scale(sub, block.scales) * dot;
      }
      sum += a.d * fp16_to_fp32(block.d) * static_cast<float>(isum);
    }
    return sum;
  }
  // Per sub-block of 16 a signed scale mapping its value of largest magnitude to -4, re-quantized
  // to 6 bits against the block's d.
  static void quantize(const float* x, void* destination, int64_t n) {
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const float* v = x + b * kQKK;
      BlockQ3_K& block = static_cast<BlockQ3_K*>(destination)[b];
      std::memset(&block, 0, sizeof block);
      float sub_scale[16], largest = 0.0f;
      for (int sub = 0; sub < 16; ++sub) {
        sub_scale[sub] = extreme_of(v + 16 * sub, 16) / -4.0f;
        largest = std::max(largest, std::fabs(sub_scale[sub]));
      }
      block.d = fp32_to_fp16(largest / 32.0f);
      const float d = fp16_to_fp32(block.d);
      for (int sub = 0; sub < 16; ++sub) {
        const int scale = d > 0 ? std::clamp(nearest(sub_scale[sub] / d), -32, 31) : 0;
        const int stored = scale + 32;
        block.scales[sub % 8] |= static_cast<uint8_t>((stored & 0xF) << (4 * (sub / 8)));
        block.scales[8 + sub % 4] |= static_cast<uint8_t>((stored >> 4) << (2 * (sub / 4)));
        for (int l = 0; l < 16; ++l) {
          const int e = 16 * sub + l, half = e / 128, j = e % 128 / 32, position = e % 32;
          const int code = scale != 0 ? std::clamp(nearest(v[e] / (d * scale)), -4, 3) + 4 : 4;
          block.qs[32 * half + position] |= static_cast<uint8_t>((code & 3) << (2 * j));
          block.hmask[position] |= static_cast<uint8_t>((code >> 2) << (4 * half + j));
        }
      }
    }
  }
};

// Asymmetric 4/5-bit K-quant encoder shared by Q4_K (levels 15) and Q5_K (levels 31): per
// sub-block of 32 a scale and a min, both re-quantized to 6 bits against the block's d and dmin.
struct KQuantResult {
  float d, dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t codes[kQKK];
};

KQuantResult quantize_k_block(const float* x, int levels) {
  KQuantResult result{};
  float sub_scale[8], sub_min[8];
  for (int sub = 0; sub < 8; ++sub) {
    float lo = x[sub * 32], hi = x[sub * 32];
    for (int l = 1; l < 32; ++l) {
      lo = std::min(lo, x[sub * 32 + l]);
      hi = std::max(hi, x[sub * 32 + l]);
    }
    lo = std::min(lo, 0.0f);
    sub_scale[sub] = (hi - lo) / levels;
    sub_min[sub] = -lo;
  }
  const float max_scale = *std::max_element(sub_scale, sub_scale + 8);
  const float max_min = *std::max_element(sub_min, sub_min + 8);
  result.d = max_scale / 63.0f;
  result.dmin = max_min / 63.0f;
  const float d = fp16_to_fp32(fp32_to_fp16(result.d));
  const float dmin = fp16_to_fp32(fp32_to_fp16(result.dmin));
  for (int sub = 0; sub < 8; ++sub) {
    const int ls = d > 0 ? std::clamp(nearest(sub_scale[sub] / d), 0, 63) : 0;
    const int lm = dmin > 0 ? std::clamp(nearest(sub_min[sub] / dmin), 0, 63) : 0;
    if (sub < 4) {
      result.scales[sub] |= static_cast<uint8_t>(ls);
      result.scales[sub + 4] |= static_cast<uint8_t>(lm);
    } else {
      result.scales[sub + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      result.scales[sub - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      result.scales[sub] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
    const float step = d * ls, offset = dmin * lm;
    for (int l = 0; l < 32; ++l) {
      const int code = step > 0 ? nearest((x[sub * 32 + l] + offset) / step) : 0;
      result.codes[sub * 32 + l] = static_cast<uint8_t>(std::clamp(code, 0, levels));
    }
  }
  return result;
}

// Q4_K and Q5_K: value = d * scale * code - dmin * min per sub-block of 32.
template <typename Block, int (*kCode)(const Block&, int)>
struct KFormat {
  static void dequantize(const void* source, float* y, int64_t n) {
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const Block& block = blocks_of<Block>(source)[b];
      const float d = fp16_to_fp32(block.d), dmin = fp16_to_fp32(block.dmin);
      for (int e = 0; e < kQKK; ++e) {
        uint8_t scale, min;
        k_scale_min(e / 32, block.scales, &scale, &min);
        y[b * kQKK + e] = d * scale * kCode(block, e) - dmin * min;
      }
    }
  }
  static float dot(int64_t n, const void* w, const void* activations) {
    float sum = 0.0f;
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const Block& block = blocks_of<Block>(w)[b];
      const BlockQ8_K& a = q8_k_of(activations)[b];
      int sum_scaled = 0, sum_mins = 0;
      for (int sub = 0; sub < 8; ++sub) {
        uint8_t scale, min;
        k_scale_min(sub, block.scales, &scale, &min);
        int dot = 0;
        for (int l = 0; l < 32; ++l) dot += kCode(block, sub * 32 + l) * a.qs[sub * 32 + l];
        sum_scaled += scale * dot;
        sum_mins += min * (a.bsums[2 * sub] + a.bsums[2 * sub + 1]);
      }
      sum += a.d * (fp16_to_fp32(block.d) * static_cast<float>(sum_scaled) -
                    fp16_to_fp32(block.dmin) * static_cast<float>(sum_mins));
    }
    return sum;
  }
};

template <>
struct Format<TensorType::Q4_K> : KFormat<BlockQ4_K, q4_k_code> {
  static void quantize(const float* x, void* destination, int64_t n) {
    auto* blocks = static_cast<BlockQ4_K*>(destination);
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const KQuantResult k = quantize_k_block(x + b * kQKK, 15);
      blocks[b].d = fp32_to_fp16(k.d);
      blocks[b].dmin = fp32_to_fp16(k.dmin);
      std::memcpy(blocks[b].scales, k.scales, kKScaleBytes);
      for (int chunk = 0; chunk < 4; ++chunk)
        for (int l = 0; l < 32; ++l)
          blocks[b].qs[chunk * 32 + l] =
              static_cast<uint8_t>(k.codes[chunk * 64 + l] | (k.codes[chunk * 64 + 32 + l] << 4));
    }
  }
};

template <>
struct Format<TensorType::Q5_K> : KFormat<BlockQ5_K, q5_k_code> {
  static void quantize(const float* x, void* destination, int64_t n) {
    auto* blocks = static_cast<BlockQ5_K*>(destination);
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const KQuantResult k = quantize_k_block(x + b * kQKK, 31);
      blocks[b].d = fp32_to_fp16(k.d);
      blocks[b].dmin = fp32_to_fp16(k.dmin);
      std::memcpy(blocks[b].scales, k.scales, kKScaleBytes);
      std::memset(blocks[b].qh, 0, sizeof blocks[b].qh);
      for (int chunk = 0; chunk < 4; ++chunk)
        for (int l = 0; l < 32; ++l) {
          const int lo = k.codes[chunk * 64 + l], hi = k.codes[chunk * 64 + 32 + l];
          blocks[b].qs[chunk * 32 + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
          blocks[b].qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * chunk)) | ((hi >> 4) << (2 * chunk + 1)));
        }
    }
  }
};

template <>
struct Format<TensorType::Q6_K> {
  static void dequantize(const void* source, float* y, int64_t n) {
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const BlockQ6_K& block = blocks_of<BlockQ6_K>(source)[b];
      const float d = fp16_to_fp32(block.d);
      for (int e = 0; e < kQKK; ++e) y[b * kQKK + e] = d * block.scales[e / 16] * (q6_k_code(block, e) - 32);
    }
  }
  static float dot(int64_t n, const void* w, const void* activations) {
    float sum = 0.0f;
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const BlockQ6_K& block = blocks_of<BlockQ6_K>(w)[b];
      const BlockQ8_K& a = q8_k_of(activations)[b];
      int isum = 0;
      for (int g = 0; g < kQKK / 16; ++g) {
        int dot = 0;
        for (int l = 0; l < 16; ++l) dot += (q6_k_code(block, g * 16 + l) - 32) * a.qs[g * 16 + l];
        isum += block.scales[g] * dot;
      }
      sum += fp16_to_fp32(block.d) * a.d * static_cast<float>(isum);
    }
    return sum;
  }
  static void quantize(const float* x, void* destination, int64_t n) {
    auto* blocks = static_cast<BlockQ6_K*>(destination);
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const float* v = x + b * kQKK;
      BlockQ6_K& block = blocks[b];
      std::memset(&block, 0, sizeof block);
      float group_scale[16];
      for (int g = 0; g < 16; ++g) {
        float amax = 0.0f;
        for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(v[g * 16 + l]));
        group_scale[g] = amax / 31.0f;
      }
      const float max_scale = *std::max_element(group_scale, group_scale + 16);
      const float d = fp16_to_fp32(fp32_to_fp16(max_scale / 127.0f));
      block.d = fp32_to_fp16(max_scale / 127.0f);
      for (int g = 0; g < 16; ++g) {
        const int ls = d > 0 ? std::clamp(nearest(group_scale[g] / d), 0, 127) : 0;
        block.scales[g] = static_cast<int8_t>(ls);
        for (int l = 0; l < 16; ++l) {
          const int e = g * 16 + l;
          const int code = ls > 0 ? std::clamp(nearest(v[e] / (d * ls)), -32, 31) + 32 : 32;
          const int half = e / 128, r = e % 128, quarter = r / 32, idx = r % 32;
          uint8_t& low_byte = block.ql[64 * half + idx + (quarter & 1) * 32];
          low_byte |= static_cast<uint8_t>(quarter < 2 ? (code & 0xF) : ((code & 0xF) << 4));
          block.qh[32 * half + idx] |= static_cast<uint8_t>((code >> 4) << (2 * quarter));
        }
      }
    }
  }
};

template <>
struct Format<TensorType::IQ4_XS> {
  static void dequantize(const void* source, float* y, int64_t n) {
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const BlockIQ4_XS& block = blocks_of<BlockIQ4_XS>(source)[b];
      const float d = fp16_to_fp32(block.d);
      for (int e = 0; e < kQKK; ++e)
        y[b * kQKK + e] = d * static_cast<float>(iq4_xs_scale(e / 32, block)) *
                          static_cast<float>(kIQ4Values[iq4_xs_code(block, e)]);
    }
  }
  static float dot(int64_t n, const void* w, const void* activations) {
    float sum = 0.0f;
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const BlockIQ4_XS& block = blocks_of<BlockIQ4_XS>(w)[b];
      const BlockQ8_K& a = q8_k_of(activations)[b];
      int isum = 0;
      for (int sub = 0; sub < 8; ++sub) {
        int dot = 0;
        for (int l = 0; l < 32; ++l) dot += kIQ4Values[iq4_xs_code(block, 32 * sub + l)] * a.qs[32 * sub + l];
        isum += iq4_xs_scale(sub, block) * dot;
      }
      sum += a.d * fp16_to_fp32(block.d) * static_cast<float>(isum);
    }
    return sum;
  }
  // Per sub-block of 32 a signed scale mapping its value of largest magnitude to -127, re-quantized
  // to 6 bits against the block's d; then the nearest table value per element.
  static void quantize(const float* x, void* destination, int64_t n) {
    for (int64_t b = 0; b < n / kQKK; ++b) {
      const float* v = x + b * kQKK;
      BlockIQ4_XS& block = static_cast<BlockIQ4_XS*>(destination)[b];
      std::memset(&block, 0, sizeof block);
      float sub_scale[8], largest = 0.0f;
      for (int sub = 0; sub < 8; ++sub) {
        sub_scale[sub] = extreme_of(v + 32 * sub, 32) / -127.0f;
        largest = std::max(largest, std::fabs(sub_scale[sub]));
      }
      block.d = fp32_to_fp16(largest / 32.0f);
      const float d = fp16_to_fp32(block.d);
      for (int sub = 0; sub < 8; ++sub) {
        const int scale = d > 0 ? std::clamp(nearest(sub_scale[sub] / d), -32, 31) : 0;
        const int stored = scale + 32;
        block.scales_l[sub / 2] |= static_cast<uint8_t>((stored & 0xF) << (4 * (sub % 2)));
        block.scales_h |= static_cast<uint16_t>((stored >> 4) << (2 * sub));
        int codes[32];
        quantize_iq4(v + 32 * sub, 32, d * static_cast<float>(scale), codes);
        pack_nibbles(codes, block.qs + 16 * sub);
      }
    }
  }
};

// ---- activations ------------------------------------------------------------------------------

void quantize_q8_row(const float* x, Q8Row out, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[b * kQK + j]));
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    out.scales[b] = fp16_to_fp32(fp32_to_fp16(amax / 127.0f));  // fp16 like llama.cpp's Q8_0
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      out.values[b * kQK + j] = static_cast<int8_t>(nearest(x[b * kQK + j] * id));
      sum += out.values[b * kQK + j];
    }
    out.scaled_sums[b] = out.scales[b] * static_cast<float>(sum);
    out.sums[b] = static_cast<int16_t>(sum);
  }
}

void quantize_q8_k(const float* x, BlockQ8_K* out, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const float* v = x + b * kQKK;
    float amax = 0.0f;
    for (int j = 0; j < kQKK; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    out[b].d = amax / 127.0f;
    for (int j = 0; j < kQKK; ++j) out[b].qs[j] = static_cast<int8_t>(nearest(v[j] * id));
    for (int g = 0; g < kQKK / 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += out[b].qs[g * 16 + j];
      out[b].bsums[g] = static_cast<int16_t>(sum);
    }
  }
}

}  // namespace

// Every switch below is generated from io/tensor_type.h's list: a listed type without a Format<>
// does not compile.
void dequantize_row(TensorType type, const void* source, float* y, int64_t n) {
  switch (type) {
#define FI_DEQUANTIZE(name, id, elements, bytes) \
  case TensorType::name: return Format<TensorType::name>::dequantize(source, y, n);
    FI_TENSOR_TYPES(FI_DEQUANTIZE)
#undef FI_DEQUANTIZE
  }
  fail("internal: dequantize of unsupported type %u", static_cast<unsigned>(type));
}

void quantize_row(TensorType type, const float* x, void* destination, int64_t n) {
  switch (type) {
#define FI_QUANTIZE(name, id, elements, bytes) \
  case TensorType::name: return Format<TensorType::name>::quantize(x, destination, n);
    FI_TENSOR_TYPES(FI_QUANTIZE)
#undef FI_QUANTIZE
  }
  fail("internal: quantize of unsupported type %u", static_cast<unsigned>(type));
}

namespace reference {

void quantize_activations(TensorType weight_type, const float* x, void* destination, int64_t n) {
  switch (activation_format(weight_type)) {
    case ActivationFormat::Q8: quantize_q8_row(x, Q8Row::at(destination, n), n); return;
    case ActivationFormat::Q8_K: quantize_q8_k(x, static_cast<BlockQ8_K*>(destination), n); return;
    case ActivationFormat::F32: std::memcpy(destination, x, static_cast<size_t>(n) * 4); return;
  }
}

float vec_dot(TensorType type, int64_t n, const void* weight_row, const void* activations) {
  switch (type) {
#define FI_DOT(name, id, elements, bytes) \
  case TensorType::name: return Format<TensorType::name>::dot(n, weight_row, activations);
    FI_TENSOR_TYPES(FI_DOT)
#undef FI_DOT
  }
  fail("internal: vec_dot of unsupported type %u", static_cast<unsigned>(type));
}

void vec_dot_tokens(TensorType weight_type, int64_t n, const void* weight_row, const void* activations,
                    size_t activation_stride, int tokens, float* out) {
  for (int t = 0; t < tokens; ++t)
    out[t] = reference::vec_dot(weight_type, n, weight_row, static_cast<const uint8_t*>(activations) + t * activation_stride);
}

void vec_dot_rows(TensorType weight_type, int64_t n, const void* weight_rows, size_t row_stride, int64_t rows,
                  const void* activations, size_t activation_stride, int tokens, float* out, size_t out_stride) {
  float result[kMaxTokensPerDot];
  for (int64_t r = 0; r < rows; ++r) {
    reference::vec_dot_tokens(weight_type, n, static_cast<const uint8_t*>(weight_rows) + static_cast<uint64_t>(r) * row_stride,
                              activations, activation_stride, tokens, result);
    for (int t = 0; t < tokens; ++t) out[static_cast<size_t>(t) * out_stride + static_cast<size_t>(r)] = result[t];
  }
}

void attention_scores_f16(int64_t n, const uint16_t* keys, size_t row_stride, int64_t positions, const float* queries,
                          size_t query_stride, int heads, float* scores, size_t score_stride) {
  for (int h = 0; h < heads; ++h)
    for (int64_t p = 0; p < positions; ++p)
      scores[static_cast<size_t>(h) * score_stride + static_cast<size_t>(p)] =
          reference::vec_dot(TensorType::F16, n, keys + static_cast<size_t>(p) * row_stride, queries + static_cast<size_t>(h) * query_stride);
}

void attention_values_f16(int64_t n, const uint16_t* values, size_t row_stride, int64_t positions, const float* weights,
                          size_t weight_stride, int heads, float* out, size_t out_stride) {
  for (int h = 0; h < heads; ++h)
    for (int64_t p = 0; p < positions; ++p) {
      const float weight = weights[static_cast<size_t>(h) * weight_stride + static_cast<size_t>(p)];
      const uint16_t* row = values + static_cast<size_t>(p) * row_stride;
      float* destination = out + static_cast<size_t>(h) * out_stride;
      for (int64_t i = 0; i < n; ++i) destination[i] += weight * fp16_to_fp32(row[i]);
    }
}

void attention_softmax(float* scores, int64_t n, float scale) {
  float max_score = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    scores[i] *= scale;
    max_score = std::max(max_score, scores[i]);
  }
  float total = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    scores[i] = std::exp(scores[i] - max_score);
    total += scores[i];
  }
  const float inverse_total = 1.0f / total;
  for (int64_t i = 0; i < n; ++i) scores[i] *= inverse_total;
}

uint64_t sum_words(const uint64_t* words, int64_t count) {
  uint64_t total = 0;
  for (int64_t i = 0; i < count; ++i) total += words[i];
  return total;
}

}  // namespace reference

}  // namespace fi
