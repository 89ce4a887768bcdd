#pragma once
// Entry points of the x86 SIMD kernels (quant_x86.inc), compiled once per instruction set:
// fi::avx2 needs AVX2, FMA and F16C; fi::avxvnni additionally AVX-VNNI; fi::avx512 AVX-512
// F/BW/VL on top of AVX2; fi::avx512vnni additionally AVX512-VNNI. All give bit-identical results.
// Call only after checking the CPU (x86_kernel_variants says which this CPU runs).
#include <cstdint>
#include <span>

#include "host/kernels/quant.h"

#define FLEXINFER_X86_KERNEL_DECLARATIONS                                                                   \
  void quantize_activations(TensorType weight_type, const float* x, void* destination, int64_t n);         \
  float vec_dot(TensorType type, int64_t n, const void* weight_row, const void* activations);              \
  void vec_dot_tokens(TensorType type, int64_t n, const void* weight_row, const void* activations,         \
                      size_t stride, int tokens, float* out);                                              \
  void vec_dot_rows(TensorType type, int64_t n, const void* weight_rows, size_t row_stride, int64_t rows,      \
                    const void* activations, size_t stride, int tokens, float* out, size_t out_stride);      \
  void vec_dot_interleaved(TensorType type, int64_t n, const void* groups, int64_t group_count,             \
                           const void* activations, size_t stride, int tokens, float* out, size_t out_stride, \
                           int64_t groups_after);                                                           \
  void attention_scores_f16(int64_t n, const uint16_t* keys, size_t row_stride, int64_t positions,                \
                            const float* queries, size_t query_stride, int heads, float* scores,                \
                            size_t score_stride);                                                               \
  void attention_values_f16(int64_t n, const uint16_t* values, size_t row_stride, int64_t positions,              \
                            const float* weights, size_t weight_stride, int heads, float* out, size_t out_stride); \
  void attention_softmax(float* scores, int64_t n, float scale);                                          \
  uint64_t sum_words(const uint64_t* words, int64_t count);

namespace fi::avx2 {
FLEXINFER_X86_KERNEL_DECLARATIONS
}  // namespace fi::avx2
namespace fi::avxvnni {
FLEXINFER_X86_KERNEL_DECLARATIONS
}  // namespace fi::avxvnni
namespace fi::avx512 {
FLEXINFER_X86_KERNEL_DECLARATIONS
}  // namespace fi::avx512
namespace fi::avx512vnni {
FLEXINFER_X86_KERNEL_DECLARATIONS
}  // namespace fi::avx512vnni

#undef FLEXINFER_X86_KERNEL_DECLARATIONS

namespace fi {

// One compiled instruction-set variant of the kernels, for tests that compare them bit for bit.
struct KernelVariant {
  const char* name;
  bool usable;  // this CPU (and OS) runs it
  const char* missing;  // when not usable: what the CPU lacks
  decltype(&avx2::quantize_activations) quantize_activations;
  decltype(&avx2::vec_dot) vec_dot;
  decltype(&avx2::vec_dot_tokens) vec_dot_tokens;
  decltype(&avx2::vec_dot_rows) vec_dot_rows;
  decltype(&avx2::vec_dot_interleaved) vec_dot_interleaved;
  decltype(&avx2::attention_scores_f16) attention_scores_f16;
  decltype(&avx2::attention_values_f16) attention_values_f16;
  decltype(&avx2::attention_softmax) attention_softmax;
  decltype(&avx2::sum_words) sum_words;
};
// AVX2, AVX2+AVX-VNNI, AVX-512, AVX-512+VNNI, whatever this CPU has.
std::span<const KernelVariant> x86_kernel_variants();

}  // namespace fi
