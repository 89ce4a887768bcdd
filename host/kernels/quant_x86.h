#pragma once
// Entry points of the x86 SIMD kernels (quant_x86.inc): fi::avx2 needs AVX2, FMA and F16C;
// fi::avxvnni additionally AVX-VNNI. Call only after checking the CPU.
#include <cstdint>

#include "host/kernels/quant.h"

#define FLEXINFER_X86_KERNEL_DECLARATIONS                                                                   \
  void quantize_q8_row(const float* x, Q8Row out, int64_t n);                                              \
  void quantize_q8_k(const float* x, BlockQ8_K* out, int64_t n);                                           \
  float vec_dot(TensorType type, int64_t n, const void* weight_row, const void* activations);              \
  void vec_dot_tokens(TensorType type, int64_t n, const void* weight_row, const void* activations,         \
                      size_t stride, int tokens, float* out);                                              \
  void vec_dot_q4_0x8(int64_t n, const void* group, const void* activations, size_t stride, int tokens,      \
                      float* out);                                                                         \
  void add_scaled_f16(int64_t n, float weight, const uint16_t* row, float* out);

namespace fi::avx2 {
FLEXINFER_X86_KERNEL_DECLARATIONS
}  // namespace fi::avx2
namespace fi::avxvnni {
FLEXINFER_X86_KERNEL_DECLARATIONS
}  // namespace fi::avxvnni

#undef FLEXINFER_X86_KERNEL_DECLARATIONS
