#include <cpuid.h>

#include <cstdlib>
#include <cstring>

#include "host/kernels/quant.h"
#include "host/kernels/quant_x86.h"
#include "io/error.h"

namespace fi {

namespace {

// CPUID directly: compilers disagree on the feature names __builtin_cpu_supports knows.
struct CpuFeatures {
  bool avx2_fma_f16c = false;
  bool avx_vnni = false;
  bool avx512 = false;  // F, BW and VL, with the OS saving the ZMM registers
  bool avx512_vnni = false;
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
  const bool zmm_saved = (xcr0_low & 0xE0u) == 0xE0u;  // opmask and all 32 ZMM registers
  features.avx512 = features.avx2_fma_f16c && zmm_saved && (b & (1u << 16)) && (b & (1u << 30)) && (b & (1u << 31));
  features.avx512_vnni = features.avx512 && (c & (1u << 11));
  __cpuid_count(7, 1, a, b, c, d);
  features.avx_vnni = features.avx2_fma_f16c && (a & (1u << 4));
  return features;
}

const CpuFeatures& features() {
  static const CpuFeatures detected = cpu_features();
  return detected;
}

#define FI_KERNEL_VARIANT(space, label, usable, missing)                                                   \
  KernelVariant {                                                                                          \
    label, usable, missing, space::quantize_activations, space::vec_dot, space::vec_dot_tokens,          \
        space::vec_dot_rows, space::vec_dot_interleaved, space::attention_scores_f16,                       \
        space::attention_values_f16, space::attention_softmax, space::sum_words                         \
  }

const std::vector<KernelVariant>& variants() {
  static const std::vector<KernelVariant> list = [] {
    const CpuFeatures& f = features();
    return std::vector<KernelVariant>{
        FI_KERNEL_VARIANT(avx2, "AVX2", f.avx2_fma_f16c, "AVX2/FMA/F16C"),
        FI_KERNEL_VARIANT(avxvnni, "AVX2+AVX-VNNI", f.avx_vnni, "AVX-VNNI"),
        FI_KERNEL_VARIANT(avx512, "AVX-512", f.avx512, "AVX-512 F/BW/VL"),
        FI_KERNEL_VARIANT(avx512vnni, "AVX-512+VNNI", f.avx512_vnni, "AVX-512 F/BW/VL/VNNI"),
    };
  }();
  return list;
}

#undef FI_KERNEL_VARIANT

// The best variant the CPU runs, or nullptr for the scalar kernels. FLEXINFER_NO_SIMD=1 forces the
// scalar kernels, FLEXINFER_NO_AVX512=1 the AVX2 ones, FLEXINFER_NO_VNNI=1 those without VNNI (for
// comparisons).
const KernelVariant* detect() {
  const CpuFeatures& f = features();
  if (std::getenv("FLEXINFER_NO_SIMD") || !f.avx2_fma_f16c) return nullptr;
  const bool vnni_allowed = !std::getenv("FLEXINFER_NO_VNNI");
  const bool avx512_allowed = !std::getenv("FLEXINFER_NO_AVX512");
  const std::vector<KernelVariant>& all = variants();
  if (avx512_allowed && vnni_allowed && f.avx512_vnni) return &all[3];
  if (avx512_allowed && f.avx512) return &all[2];
  if (vnni_allowed && f.avx_vnni) return &all[1];
  return &all[0];
}

const KernelVariant* active() {
  static const KernelVariant* chosen = detect();
  return chosen;
}

}  // namespace

std::span<const KernelVariant> x86_kernel_variants() { return variants(); }

bool simd_kernels_active() { return active() != nullptr; }

const char* kernel_isa_name() { return active() ? active()->name : "scalar"; }

void quantize_activations(TensorType weight_type, const float* x, void* destination, int64_t n) {
  if (active()) return active()->quantize_activations(weight_type, x, destination, n);
  reference::quantize_activations(weight_type, x, destination, n);
}

float vec_dot(TensorType weight_type, int64_t n, const void* weight_row, const void* activations) {
  if (active()) return active()->vec_dot(weight_type, n, weight_row, activations);
  return reference::vec_dot(weight_type, n, weight_row, activations);
}

void vec_dot_tokens(TensorType weight_type, int64_t n, const void* weight_row, const void* activations,
                    size_t activation_stride, int tokens, float* out) {
  if (active()) return active()->vec_dot_tokens(weight_type, n, weight_row, activations, activation_stride, tokens, out);
  reference::vec_dot_tokens(weight_type, n, weight_row, activations, activation_stride, tokens, out);
}

void vec_dot_rows(TensorType weight_type, int64_t n, const void* weight_rows, size_t row_stride, int64_t rows,
                  const void* activations, size_t activation_stride, int tokens, float* out, size_t out_stride) {
  if (active())
    return active()->vec_dot_rows(weight_type, n, weight_rows, row_stride, rows, activations, activation_stride, tokens,
                                  out, out_stride);
  reference::vec_dot_rows(weight_type, n, weight_rows, row_stride, rows, activations, activation_stride, tokens, out,
                          out_stride);
}

void vec_dot_interleaved(TensorType weight_type, int64_t n, const void* groups, int64_t group_count,
                         const void* activations, size_t activation_stride, int tokens, float* out, size_t out_stride,
                         int64_t groups_after) {
  if (!active()) fail("internal: interleaved rows without SIMD kernels");
  active()->vec_dot_interleaved(weight_type, n, groups, group_count, activations, activation_stride, tokens, out,
                                out_stride, groups_after);
}

void attention_scores_f16(int64_t n, const uint16_t* keys, size_t row_stride, int64_t positions, const float* queries,
                          size_t query_stride, int heads, float* scores, size_t score_stride) {
  if (active())
    return active()->attention_scores_f16(n, keys, row_stride, positions, queries, query_stride, heads, scores,
                                          score_stride);
  reference::attention_scores_f16(n, keys, row_stride, positions, queries, query_stride, heads, scores, score_stride);
}

void attention_values_f16(int64_t n, const uint16_t* values, size_t row_stride, int64_t positions, const float* weights,
                          size_t weight_stride, int heads, float* out, size_t out_stride) {
  if (active())
    return active()->attention_values_f16(n, values, row_stride, positions, weights, weight_stride, heads, out,
                                          out_stride);
  reference::attention_values_f16(n, values, row_stride, positions, weights, weight_stride, heads, out, out_stride);
}

void attention_softmax(float* scores, int64_t n, float scale) {
  if (active()) return active()->attention_softmax(scores, n, scale);
  reference::attention_softmax(scores, n, scale);
}

uint64_t sum_words(const uint64_t* words, int64_t count) {
  if (active()) return active()->sum_words(words, count);
  return reference::sum_words(words, count);
}

}  // namespace fi
