#include <cstdlib>
#include <cstring>

#include "host/quant.h"
#include "host/quant_avx2.h"

namespace fi {

namespace {
bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c") && std::getenv("FLEXINFER_NO_SIMD") == nullptr;
  return has;
}
}  // namespace

bool simd_kernels_active() { return cpu_has_avx2(); }

void quantize_activations(TensorType weight_type, const float* x, void* destination, int64_t n) {
  if (!cpu_has_avx2()) return reference::quantize_activations(weight_type, x, destination, n);
  switch (activation_format(weight_type)) {
    case ActivationFormat::Q8: return avx2::quantize_q8_row(x, Q8Row::at(destination, n), n);
    case ActivationFormat::Q8_K: return avx2::quantize_q8_k(x, static_cast<BlockQ8_K*>(destination), n);
    case ActivationFormat::F32: std::memcpy(destination, x, static_cast<size_t>(n) * sizeof(float)); return;
  }
}

float vec_dot(TensorType weight_type, int64_t n, const void* weight_row, const void* activations) {
  if (!cpu_has_avx2()) return reference::vec_dot(weight_type, n, weight_row, activations);
  return avx2::vec_dot(weight_type, n, weight_row, activations);
}

void add_scaled_f16(int64_t n, float weight, const uint16_t* row, float* out) {
  if (!cpu_has_avx2()) return reference::add_scaled_f16(n, weight, row, out);
  avx2::add_scaled_f16(n, weight, row, out);
}

}  // namespace fi
