// The x86 kernels for AVX2/FMA/F16C.
#define FLEXINFER_SIMD_NAMESPACE avx2
#define FLEXINFER_AVXVNNI 0
#include "host/kernels/quant_x86.inc"
