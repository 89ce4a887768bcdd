#pragma once
// Bit-exact IEEE half and bfloat16 conversions (scalar; SIMD paths use F16C).
#include <cstdint>
#include <cstring>

namespace fi {

inline float fp32_from_bits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}
inline uint32_t fp32_to_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return bits;
}

inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  if (exponent == 0x1f) return fp32_from_bits(sign | 0x7f800000 | (mantissa << 13));
  if (exponent == 0) {
    if (mantissa == 0) return fp32_from_bits(sign);
    // Subnormal: normalise.
    exponent = 1;
    while ((mantissa & 0x400) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    mantissa &= 0x3ff;
    return fp32_from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13));
  }
  return fp32_from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// Round to nearest even, with overflow to infinity and NaN preserved.
inline uint16_t fp32_to_fp16(float value) {
  const uint32_t bits = fp32_to_bits(value);
  const uint32_t sign = (bits >> 16) & 0x8000;
  const uint32_t abs_bits = bits & 0x7fffffff;
  if (abs_bits >= 0x7f800000) return static_cast<uint16_t>(sign | 0x7c00 | (abs_bits > 0x7f800000 ? 0x200 : 0));
  if (abs_bits >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // rounds to >= 65520
  if (abs_bits < 0x38800000) {                                              // subnormal half or zero
    if (abs_bits < 0x33000000) return static_cast<uint16_t>(sign);
    const uint32_t exponent = abs_bits >> 23;
    const uint32_t mantissa = (abs_bits & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - exponent;  // 14..24
    uint32_t half = mantissa >> shift;
    const uint32_t remainder = mantissa & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (remainder > halfway || (remainder == halfway && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = ((abs_bits >> 13) - (112u << 10));
  const uint32_t remainder = abs_bits & 0x1fff;
  if (remainder > 0x1000 || (remainder == 0x1000 && (half & 1))) ++half;
  return static_cast<uint16_t>(sign | half);
}

inline float bf16_to_fp32(uint16_t b) { return fp32_from_bits(static_cast<uint32_t>(b) << 16); }

inline uint16_t fp32_to_bf16(float value) {
  const uint32_t bits = fp32_to_bits(value);
  if ((bits & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((bits >> 16) | 0x40);
  return static_cast<uint16_t>((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
}

}  // namespace fi
