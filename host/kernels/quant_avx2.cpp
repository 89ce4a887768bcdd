// The x86 kernels for AVX2/FMA/F16C.
#define FLEXINFER_SIMD_NAMESPACE avx2
#define FLEXINFER_VNNI 0
#define FLEXINFER_AVX512 0
#include "host/kernels/quant_x86.inc"
