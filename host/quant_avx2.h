#pragma once
// Entry points of quant_avx2.cpp; call only when the CPU has AVX2, FMA and F16C.
#include <cstdint>

#include "host/quant.h"

namespace fi::avx2 {
void quantize_q8_row(const float* x, Q8Row out, int64_t n);
void quantize_q8_k(const float* x, BlockQ8_K* out, int64_t n);
float vec_dot(TensorType type, int64_t n, const void* weight_row, const void* activations);
void add_scaled_f16(int64_t n, float weight, const uint16_t* row, float* out);
}  // namespace fi::avx2
