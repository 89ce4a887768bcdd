#include <cpuid.h>

#include <cstdlib>
#include <cstring>

#include "host/kernels/quant.h"
#include "host/kernels/quant_x86.h"
#include "io/error.h"

namespace fi {

namespace {

enum class Isa { Scalar, Avx2, AvxVnni };

// CPUID directly: compilers disagree on the feature names __builtin_cpu_supports knows.
struct CpuFeatures {
  bool avx2_fma_f16c = false;
  bool avx_vnni = false;
};

CpuFeatures cpu_features() {
  CpuFeatures features;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return features;
  const bool fma = c & (1u << 12), f16c = c & (1u << 29), osxsave = c & (1u << 27);
  if (!osxsave) return features;
  unsigned xcr0_low, xcr0_high;
  __asm__("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
  if ((xcr0_low & 6u) != 6u) return features;  // the OS saves the YMM registers
  __cpuid_count(7, 0, a, b, c, d);
  features.avx2_fma_f16c = (b & (1u << 5)) && fma && f16c;
  __cpuid_count(7, 1, a, b, c, d);
  features.avx_vnni = features.avx2_fma_f16c && (a & (1u << 4));
  return features;
}

// FLEXINFER_NO_SIMD=1 forces the scalar kernels, FLEXINFER_NO_VNNI=1 plain AVX2 (for comparisons).
Isa detect_isa() {
  const CpuFeatures features = cpu_features();
  if (std::getenv("FLEXINFER_NO_SIMD") || !features.avx2_fma_f16c) return Isa::Scalar;
  if (std::getenv("FLEXINFER_NO_VNNI") || !features.avx_vnni) return Isa::Avx2;
  return Isa::AvxVnni;
}

Isa isa() {
  static const Isa detected = detect_isa();
  return detected;
}

}  // namespace

bool simd_kernels_active() { return isa() != Isa::Scalar; }

const char* kernel_isa_name() {
  switch (isa()) {
    case Isa::AvxVnni: return "AVX2+AVX-VNNI";
    case Isa::Avx2: return "AVX2";
    default: return "scalar";
  }
}

void quantize_activations(TensorType weight_type, const float* x, void* destination, int64_t n) {
  const ActivationFormat format = activation_format(weight_type);
  if (format == ActivationFormat::F32) {
    std::memcpy(destination, x, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  switch (isa()) {
    case Isa::Scalar: return reference::quantize_activations(weight_type, x, destination, n);
    case Isa::Avx2:
      if (format == ActivationFormat::Q8) return avx2::quantize_q8_row(x, Q8Row::at(destination, n), n);
      return avx2::quantize_q8_k(x, static_cast<BlockQ8_K*>(destination), n);
    case Isa::AvxVnni:
      if (format == ActivationFormat::Q8) return avxvnni::quantize_q8_row(x, Q8Row::at(destination, n), n);
      return avxvnni::quantize_q8_k(x, static_cast<BlockQ8_K*>(destination), n);
  }
}

float vec_dot(TensorType weight_type, int64_t n, const void* weight_row, const void* activations) {
  switch (isa()) {
    case Isa::AvxVnni: return avxvnni::vec_dot(weight_type, n, weight_row, activations);
    case Isa::Avx2: return avx2::vec_dot(weight_type, n, weight_row, activations);
    default: return reference::vec_dot(weight_type, n, weight_row, activations);
  }
}

void vec_dot_tokens(TensorType weight_type, int64_t n, const void* weight_row, const void* activations,
                    size_t activation_stride, int tokens, float* out) {
  switch (isa()) {
    case Isa::AvxVnni:
      return avxvnni::vec_dot_tokens(weight_type, n, weight_row, activations, activation_stride, tokens, out);
    case Isa::Avx2: return avx2::vec_dot_tokens(weight_type, n, weight_row, activations, activation_stride, tokens, out);
    default: return reference::vec_dot_tokens(weight_type, n, weight_row, activations, activation_stride, tokens, out);
  }
}

void vec_dot_q4_0x8(int64_t n, const void* group, const void* activations, size_t activation_stride, int tokens,
                    float* out) {
  switch (isa()) {
    case Isa::AvxVnni: return avxvnni::vec_dot_q4_0x8(n, group, activations, activation_stride, tokens, out);
    case Isa::Avx2: return avx2::vec_dot_q4_0x8(n, group, activations, activation_stride, tokens, out);
    default: fail("internal: interleaved Q4_0 rows without SIMD kernels");
  }
}

void add_scaled_f16(int64_t n, float weight, const uint16_t* row, float* out) {
  if (isa() == Isa::Scalar) return reference::add_scaled_f16(n, weight, row, out);
  avx2::add_scaled_f16(n, weight, row, out);
}

}  // namespace fi
