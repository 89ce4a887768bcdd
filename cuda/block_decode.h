#pragma once
// Decoding of weight rows in groups of 32 elements, shared by the GPU kernels (where it runs per
// lane) and the host (where tests compare it with host/quant's dequantize_row on random data).
// A group is the unit every GPU kernel spreads over lanes: one 32-element block (Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, IQ4_NL), one eighth of a 256-element super-block (K-quants, IQ4_XS), or 32
// consecutive floats. Loads are as wide as each format's alignment allows: 16 bytes for the Q4_K
// and Q5_K super-blocks' 16-byte-aligned parts and aligned float rows, 4 bytes for the 20-, 84- and
// 136-byte blocks, 2 bytes for the 18-, 22-, 24-, 34-, 110- and 210-byte blocks.
#include <cstdint>

#include "io/tensor_type.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define FI_HD __host__ __device__ __forceinline__
#else
#define FI_HD inline
#endif
// Fully unrolled on the device, so the 32 decoded values stay in registers.
#if defined(__CUDA_ARCH__)
#define FI_UNROLL _Pragma("unroll")
#else
#define FI_UNROLL
#endif

namespace fi::cuda {

constexpr int kGroup = 32;

FI_HD float half_bits_to_float(uint16_t bits) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(bits));
#else
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1f;
  const uint32_t mantissa = bits & 0x3ff;
  uint32_t result;
  if (exponent == 0x1f) {
    result = sign | 0x7f800000 | (mantissa << 13);
  } else if (exponent != 0) {
    result = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else {
    // Zero or subnormal: mantissa x 2^-24 is exact in float.
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  float value;
  __builtin_memcpy(&value, &result, 4);
  return value;
#endif
}

FI_HD float bf16_bits_to_float(uint16_t bits) {
  const uint32_t widened = static_cast<uint32_t>(bits) << 16;
  float value;
#if defined(__CUDA_ARCH__)
  value = __uint_as_float(widened);
#else
  __builtin_memcpy(&value, &widened, 4);
#endif
  return value;
}

// 16 aligned bytes as four 32-bit words (one 128-bit load on the device).
struct Words4 {
  uint32_t w[4];
};
FI_HD Words4 load16(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  const uint4 v = *reinterpret_cast<const uint4*>(p);
  return {{v.x, v.y, v.z, v.w}};
#else
  Words4 words;
  __builtin_memcpy(words.w, p, 16);
  return words;
#endif
}
template <typename Word>
FI_HD Word load_word(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const Word*>(p);
#else
  Word word;
  __builtin_memcpy(&word, p, sizeof(Word));
  return word;
#endif
}
FI_HD uint16_t load2(const uint8_t* p) { return load_word<uint16_t>(p); }
FI_HD uint32_t load4(const uint8_t* p) { return load_word<uint32_t>(p); }
FI_HD uint8_t byte_of(const Words4* words, int index) {
  return static_cast<uint8_t>(words[index / 16].w[(index % 16) / 4] >> (8 * (index % 4)));
}

// a * b + c rounded after the multiply and after the add, as the CPU's dequantize_row computes it
// (the device would otherwise fuse them into one rounding).
FI_HD float multiply_then_add(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(__fmul_rn(a, b), c);
#else
  const float product = a * b;
  return product + c;
#endif
}

// IQ4_NL's and IQ4_XS's non-linear value of a 4-bit code (host/kernels/quant.h's kIQ4Values),
// from constants rather than a table in memory.
FI_HD int iq4_value(int code) {
  const uint32_t word = code < 8 ? (code < 4 ? 0xBFAD9881u : 0xF6EADDCFu) : (code < 12 ? 0x26190D01u : 0x71594535u);
  return static_cast<int8_t>(word >> (8 * (code & 3)));
}

// Bytes of one group's storage, for computing where group g starts inside a block.
template <TensorType T>
struct Format;

template <>
struct Format<TensorType::F32> {
  FI_HD static void decode(const uint8_t* row, int64_t group, int valid, float* out) {
    const uint8_t* p = row + group * 128;
    if (valid == kGroup && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
      FI_UNROLL
      for (int i = 0; i < 8; ++i) {
        const Words4 v = load16(p + 16 * i);
        FI_UNROLL
        for (int j = 0; j < 4; ++j) __builtin_memcpy(&out[4 * i + j], &v.w[j], 4);
      }
      return;
    }
    FI_UNROLL
    for (int i = 0; i < kGroup; ++i) {
      float value = 0.0f;
      if (i < valid) __builtin_memcpy(&value, p + 4 * i, 4);
      out[i] = value;
    }
  }
};

template <typename Convert>
FI_HD void decode_halves(const uint8_t* row, int64_t group, int valid, float* out, Convert convert) {
  const uint8_t* p = row + group * 64;
  if (valid == kGroup && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
    FI_UNROLL
    for (int i = 0; i < 4; ++i) {
      const Words4 v = load16(p + 16 * i);
      FI_UNROLL
      for (int j = 0; j < 4; ++j) {
        out[8 * i + 2 * j] = convert(static_cast<uint16_t>(v.w[j] & 0xffff));
        out[8 * i + 2 * j + 1] = convert(static_cast<uint16_t>(v.w[j] >> 16));
      }
    }
    return;
  }
  FI_UNROLL
  for (int i = 0; i < kGroup; ++i) out[i] = i < valid ? convert(load2(p + 2 * i)) : 0.0f;
}

template <>
struct Format<TensorType::F16> {
  FI_HD static void decode(const uint8_t* row, int64_t group, int valid, float* out) {
    decode_halves(row, group, valid, out, [](uint16_t h) { return half_bits_to_float(h); });
  }
};

template <>
struct Format<TensorType::BF16> {
  FI_HD static void decode(const uint8_t* row, int64_t group, int valid, float* out) {
    decode_halves(row, group, valid, out, [](uint16_t h) { return bf16_bits_to_float(h); });
  }
};

template <>
struct Format<TensorType::Q8_0> {  // 34-byte block: fp16 scale, 32 int8
  FI_HD static void decode(const uint8_t* row, int64_t group, int, float* out) {
    const uint8_t* block = row + group * 34;
    const float d = half_bits_to_float(load2(block));
    FI_UNROLL
    for (int i = 0; i < 16; ++i) {
      const uint16_t pair = load2(block + 2 + 2 * i);
      out[2 * i] = d * static_cast<float>(static_cast<int8_t>(pair & 0xff));
      out[2 * i + 1] = d * static_cast<float>(static_cast<int8_t>(pair >> 8));
    }
  }
};

template <>
struct Format<TensorType::Q4_0> {  // 18-byte block: fp16 scale, element j low nibble / j+16 high
  FI_HD static void decode(const uint8_t* row, int64_t group, int, float* out) {
    const uint8_t* block = row + group * 18;
    const float d = half_bits_to_float(load2(block));
    FI_UNROLL
    for (int i = 0; i < 8; ++i) {
      const uint16_t pair = load2(block + 2 + 2 * i);
      const int b0 = pair & 0xff, b1 = pair >> 8;
      out[2 * i] = d * static_cast<float>((b0 & 0xf) - 8);
      out[2 * i + 1] = d * static_cast<float>((b1 & 0xf) - 8);
      out[2 * i + 16] = d * static_cast<float>((b0 >> 4) - 8);
      out[2 * i + 17] = d * static_cast<float>((b1 >> 4) - 8);
    }
  }
};

template <>
struct Format<TensorType::Q4_1> {  // 20-byte block: fp16 scale and minimum, nibbles as Q4_0's
  FI_HD static void decode(const uint8_t* row, int64_t group, int, float* out) {
    const uint8_t* block = row + group * 20;
    const uint32_t header = load4(block);
    const float d = half_bits_to_float(static_cast<uint16_t>(header & 0xffff));
    const float m = half_bits_to_float(static_cast<uint16_t>(header >> 16));
    FI_UNROLL
    for (int i = 0; i < 4; ++i) {
      const uint32_t bytes = load4(block + 4 + 4 * i);
      FI_UNROLL
      for (int k = 0; k < 4; ++k) {
        const int byte = static_cast<int>((bytes >> (8 * k)) & 0xff);
        out[4 * i + k] = multiply_then_add(d, static_cast<float>(byte & 0xf), m);
        out[4 * i + k + 16] = multiply_then_add(d, static_cast<float>(byte >> 4), m);
      }
    }
  }
};

// Q5_0 and Q5_1: nibbles as Q4_0's, fifth bits in a 32-bit word (bit j: element j).
template <bool kMinimum>
FI_HD void decode_q5(const uint8_t* block, float* out) {
  const float d = half_bits_to_float(load2(block));
  const float m = kMinimum ? half_bits_to_float(load2(block + 2)) : 0.0f;
  const uint8_t* high_bytes = block + (kMinimum ? 4 : 2);
  const uint32_t high = static_cast<uint32_t>(load2(high_bytes)) | (static_cast<uint32_t>(load2(high_bytes + 2)) << 16);
  FI_UNROLL
  for (int i = 0; i < 8; ++i) {
    const uint16_t pair = load2(high_bytes + 4 + 2 * i);
    FI_UNROLL
    for (int k = 0; k < 2; ++k) {
      const int j = 2 * i + k, byte = (pair >> (8 * k)) & 0xff;
      const int low = (byte & 0xf) | static_cast<int>(((high >> j) & 1) << 4);
      const int upper = (byte >> 4) | static_cast<int>(((high >> (j + 16)) & 1) << 4);
      if (kMinimum) {
        out[j] = multiply_then_add(d, static_cast<float>(low), m);
        out[j + 16] = multiply_then_add(d, static_cast<float>(upper), m);
      } else {
        out[j] = d * static_cast<float>(low - 16);
        out[j + 16] = d * static_cast<float>(upper - 16);
      }
    }
  }
}

template <>
struct Format<TensorType::Q5_0> {  // 22-byte block: fp16 scale, fifth bits, nibbles; value d * (code - 16)
  FI_HD static void decode(const uint8_t* row, int64_t group, int, float* out) { decode_q5<false>(row + group * 22, out); }
};

template <>
struct Format<TensorType::Q5_1> {  // 24-byte block: fp16 scale and minimum, fifth bits, nibbles
  FI_HD static void decode(const uint8_t* row, int64_t group, int, float* out) { decode_q5<true>(row + group * 24, out); }
};

template <>
struct Format<TensorType::IQ4_NL> {  // 18-byte block: fp16 scale, nibbles as Q4_0's indexing the table
  FI_HD static void decode(const uint8_t* row, int64_t group, int, float* out) {
    const uint8_t* block = row + group * 18;
    const float d = half_bits_to_float(load2(block));
    FI_UNROLL
    for (int i = 0; i < 8; ++i) {
      const uint16_t pair = load2(block + 2 + 2 * i);
      FI_UNROLL
      for (int k = 0; k < 2; ++k) {
        const int byte = (pair >> (8 * k)) & 0xff;
        out[2 * i + k] = d * static_cast<float>(iq4_value(byte & 0xf));
        out[2 * i + k + 16] = d * static_cast<float>(iq4_value(byte >> 4));
      }
    }
  }
};

template <>
struct Format<TensorType::Q2_K> {  // 84 bytes: 16 scale/min bytes, 64 bytes of 2-bit codes, d, dmin
  FI_HD static void decode(const uint8_t* row, int64_t group, int, float* out) {
    const uint8_t* block = row + (group / 8) * 84;
    const int sub = static_cast<int>(group % 8), half = sub / 4, shift = 2 * (sub % 4);
    const uint32_t header = load4(block + 80);
    const float d = half_bits_to_float(static_cast<uint16_t>(header & 0xffff));
    const float dmin = half_bits_to_float(static_cast<uint16_t>(header >> 16));
    const uint16_t scale_pair = load2(block + 2 * sub);  // sub-blocks of 16: 2 * sub and 2 * sub + 1
    FI_UNROLL
    for (int k = 0; k < 2; ++k) {
      const int scale = (scale_pair >> (8 * k)) & 0xf, min = (scale_pair >> (8 * k + 4)) & 0xf;
      const float step = d * static_cast<float>(scale), offset = dmin * static_cast<float>(min);
      FI_UNROLL
      for (int i = 0; i < 4; ++i) {
        const uint32_t bytes = load4(block + 16 + 32 * half + 16 * k + 4 * i);
        FI_UNROLL
        for (int b = 0; b < 4; ++b)
          out[16 * k + 4 * i + b] = multiply_then_add(step, static_cast<float>((bytes >> (8 * b + shift)) & 3), -offset);
      }
    }
  }
};

template <>
struct Format<TensorType::Q3_K> {  // 110 bytes: 32 high-bit bytes, 64 bytes of 2-bit codes, 12 scale bytes, d
  FI_HD static void decode(const uint8_t* row, int64_t group, int, float* out) {
    const uint8_t* block = row + (group / 8) * 110;
    const int sub = static_cast<int>(group % 8), half = sub / 4, j = sub % 4;
    const float d = half_bits_to_float(load2(block + 108));
    FI_UNROLL
    for (int k = 0; k < 2; ++k) {
      const int scale_index = 2 * sub + k;  // of the 16-element sub-blocks
      const int low = (load2(block + 96 + 2 * ((scale_index % 8) / 2)) >> (8 * (scale_index % 2) + 4 * (scale_index / 8))) & 0xf;
      const int high = (load2(block + 104 + 2 * ((scale_index % 4) / 2)) >> (8 * (scale_index % 2) + 2 * (scale_index / 4))) & 3;
      const float step = d * static_cast<float>((low | (high << 4)) - 32);
      FI_UNROLL
      for (int i = 0; i < 8; ++i) {
        const int l = 16 * k + 2 * i;
        const uint16_t codes = load2(block + 32 + 32 * half + l), highs = load2(block + l);
        FI_UNROLL
        for (int b = 0; b < 2; ++b) {
          const int code = ((codes >> (8 * b + 2 * j)) & 3) | (((highs >> (8 * b + 4 * half + j)) & 1) << 2);
          out[l + b] = step * static_cast<float>(code - 4);
        }
      }
    }
  }
};

template <>
struct Format<TensorType::IQ4_XS> {  // 136 bytes: d, high scale bits, low scale nibbles, 128 bytes of codes
  FI_HD static void decode(const uint8_t* row, int64_t group, int, float* out) {
    const uint8_t* block = row + (group / 8) * 136;
    const int sub = static_cast<int>(group % 8);
    const uint32_t header = load4(block);
    const float d = half_bits_to_float(static_cast<uint16_t>(header & 0xffff));
    const int low = (load4(block + 4) >> (4 * sub)) & 0xf, high = (header >> (16 + 2 * sub)) & 3;
    const float step = d * static_cast<float>((low | (high << 4)) - 32);
    FI_UNROLL
    for (int i = 0; i < 4; ++i) {
      const uint32_t bytes = load4(block + 8 + 16 * sub + 4 * i);
      FI_UNROLL
      for (int b = 0; b < 4; ++b) {
        const int byte = static_cast<int>((bytes >> (8 * b)) & 0xff);
        out[4 * i + b] = step * static_cast<float>(iq4_value(byte & 0xf));
        out[4 * i + b + 16] = step * static_cast<float>(iq4_value(byte >> 4));
      }
    }
  }
};

// 6-bit scale and min of sub-block j from a K-quant's 12 packed bytes (given as 3 words).
FI_HD void k_scale_min_words(int j, const uint32_t* words, int* scale, int* min) {
  auto byte = [&](int i) { return static_cast<int>((words[i / 4] >> (8 * (i % 4))) & 0xff); };
  if (j < 4) {
    *scale = byte(j) & 63;
    *min = byte(j + 4) & 63;
  } else {
    *scale = (byte(j + 4) & 0xf) | ((byte(j - 4) >> 6) << 4);
    *min = (byte(j + 4) >> 4) | ((byte(j) >> 6) << 4);
  }
}

// Q4_K/Q5_K sub-block `sub`: value = step * code - offset, from the super-block's d and dmin and
// the sub-block's 6-bit scale and min.
FI_HD void k_step_offset(const uint8_t* block, int sub, float* step, float* offset) {
  const uint32_t header = load4(block);
  const float d = half_bits_to_float(static_cast<uint16_t>(header & 0xffff));
  const float dmin = half_bits_to_float(static_cast<uint16_t>(header >> 16));
  const uint32_t scale_words[3] = {load4(block + 4), load4(block + 8), load4(block + 12)};
  int scale, min;
  k_scale_min_words(sub, scale_words, &scale, &min);
  *step = d * static_cast<float>(scale);
  *offset = dmin * static_cast<float>(min);
}

template <>
struct Format<TensorType::Q4_K> {  // 144-byte super-block: d, dmin, 12 scale bytes, 128 bytes of nibbles
  FI_HD static void decode(const uint8_t* row, int64_t group, int, float* out) {
    const uint8_t* block = row + (group / 8) * 144;
    const int sub = static_cast<int>(group % 8);
    float step, offset;
    k_step_offset(block, sub, &step, &offset);
    // 64-element chunks: elements 0-31 in the low nibbles of 32 bytes, 32-63 in the high ones.
    const Words4 q[2] = {load16(block + 16 + 32 * (sub / 2)), load16(block + 32 + 32 * (sub / 2))};
    const int shift = 4 * (sub % 2);
    FI_UNROLL
    for (int i = 0; i < kGroup; ++i) out[i] = multiply_then_add(step, static_cast<float>((byte_of(q, i) >> shift) & 0xf), -offset);
  }
};

template <>
struct Format<TensorType::Q5_K> {  // 176 bytes: d, dmin, 12 scale bytes, 32 bytes of fifth bits, nibbles
  FI_HD static void decode(const uint8_t* row, int64_t group, int, float* out) {
    const uint8_t* block = row + (group / 8) * 176;
    const int sub = static_cast<int>(group % 8);
    float step, offset;
    k_step_offset(block, sub, &step, &offset);
    const Words4 high[2] = {load16(block + 16), load16(block + 32)};
    const Words4 q[2] = {load16(block + 48 + 32 * (sub / 2)), load16(block + 64 + 32 * (sub / 2))};
    const int shift = 4 * (sub % 2);
    FI_UNROLL
    for (int i = 0; i < kGroup; ++i) {
      const int code = ((byte_of(q, i) >> shift) & 0xf) | (((byte_of(high, i) >> sub) & 1) << 4);
      out[i] = multiply_then_add(step, static_cast<float>(code), -offset);
    }
  }
};

template <>
struct Format<TensorType::Q6_K> {  // 210 bytes: 128 low-nibble bytes, 64 high-bit bytes, 16 int8 scales, d
  FI_HD static void decode(const uint8_t* row, int64_t group, int, float* out) {
    const uint8_t* block = row + (group / 8) * 210;
    const int sub = static_cast<int>(group % 8);
    const int half = sub / 4, quarter = sub % 4;
    const float d = half_bits_to_float(load2(block + 208));
    const uint8_t* low = block + 64 * half + 32 * (quarter & 1);
    const uint8_t* high = block + 128 + 32 * half;
    const int low_shift = 4 * (quarter >> 1), high_shift = 2 * quarter;
    const uint16_t scale_pair = load2(block + 192 + 8 * half + 2 * quarter);
    const float scaled[2] = {d * static_cast<float>(static_cast<int8_t>(scale_pair & 0xff)),
                             d * static_cast<float>(static_cast<int8_t>(scale_pair >> 8))};
    FI_UNROLL
    for (int i = 0; i < kGroup; i += 2) {
      const uint16_t lows = load2(low + i), highs = load2(high + i);
      FI_UNROLL
      for (int k = 0; k < 2; ++k) {
        const int code = (((k ? lows >> 8 : lows) >> low_shift) & 0xf) |
                         ((((k ? highs >> 8 : highs) >> high_shift) & 3) << 4);
        out[i + k] = scaled[(i + k) / 16] * static_cast<float>(code - 32);
      }
    }
  }
};

// Runtime dispatch for host callers (tests); kernels instantiate Format<T> directly. Generated from
// io/tensor_type.h's list: a type without a Format<> specialisation does not compile.
inline void decode_group(TensorType type, const uint8_t* row, int64_t group, int valid, float* out) {
  switch (type) {
#define FI_DECODE_TYPE(name, id, elements, bytes) \
  case TensorType::name: Format<TensorType::name>::decode(row, group, valid, out); return;
    FI_TENSOR_TYPES(FI_DECODE_TYPE)
#undef FI_DECODE_TYPE
  }
}

}  // namespace fi::cuda
