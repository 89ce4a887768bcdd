// The x86 kernels for AVX2/FMA/F16C plus AVX-512 F/BW/VL (interleaved rows two groups at a time).
#define FLEXINFER_SIMD_NAMESPACE avx512
#define FLEXINFER_VNNI 0
#define FLEXINFER_AVX512 1
#include "host/kernels/quant_x86.inc"
