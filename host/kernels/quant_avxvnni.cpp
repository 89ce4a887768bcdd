// The x86 kernels for AVX2/FMA/F16C plus AVX-VNNI.
#define FLEXINFER_SIMD_NAMESPACE avxvnni
#define FLEXINFER_VNNI 1
#define FLEXINFER_AVX512 0
#include "host/kernels/quant_x86.inc"
