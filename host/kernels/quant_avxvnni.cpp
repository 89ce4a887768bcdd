// The x86 kernels for AVX2/FMA/F16C plus AVX-VNNI.
#define FLEXINFER_SIMD_NAMESPACE avxvnni
#define FLEXINFER_AVXVNNI 1
#include "host/kernels/quant_x86.inc"
