#pragma once
// Every CUDA runtime call and kernel launch goes through these, so a failure surfaces as one
// fi::Error line naming the call and CUDA's message instead of garbage later on.
#include <cuda_runtime.h>

#include "io/error.h"

#define FI_CUDA_CHECK(call)                                                                        \
  do {                                                                                             \
    const cudaError_t fi_cuda_status = (call);                                                     \
    if (fi_cuda_status != cudaSuccess) {                                                           \
      (void)cudaGetLastError(); /* not left for a later launch check to report as its own */       \
      ::fi::fail("CUDA error: %s failed: %s", #call, cudaGetErrorString(fi_cuda_status));          \
    }                                                                                              \
  } while (0)

// After a <<<...>>> launch: configuration errors show up here, faults at the next synchronisation.
// cudaGetLastError reports the last error of any runtime call on this thread, so every call whose
// failure is tolerated or thrown clears it (FI_CUDA_CHECK does).
#define FI_CUDA_CHECK_LAUNCH(name)                                                                 \
  do {                                                                                             \
    const cudaError_t fi_cuda_status = cudaGetLastError();                                         \
    if (fi_cuda_status != cudaSuccess)                                                             \
      ::fi::fail("CUDA error: launch of %s failed: %s", name, cudaGetErrorString(fi_cuda_status)); \
  } while (0)

// kernel<<<grid, block, 0, stream>>>: a macro so that tests/cuda_emulation.h can run the same
// launch code on the CPU (it defines FI_CUDA_EMULATION and its own FI_LAUNCH).
#if !defined(FI_CUDA_EMULATION)
#define FI_LAUNCH(grid, block, stream, ...) __VA_ARGS__<<<(grid), (block), 0, (stream)>>>
#endif

namespace fi::cuda {
inline cudaStream_t native(void* handle) { return static_cast<cudaStream_t>(handle); }
}  // namespace fi::cuda
