// The x86 kernels for AVX2/FMA/F16C plus AVX-512 F/BW/VL and AVX512-VNNI.
#define FLEXINFER_SIMD_NAMESPACE avx512vnni
#define FLEXINFER_VNNI 2
#define FLEXINFER_AVX512 1
#include "host/kernels/quant_x86.inc"
