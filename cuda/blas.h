#pragma once
// cuBLAS for batched matrix products (prefill): a handle bound to one stream, with its workspace
// taken from the device arena so it counts against the budget.
#include <cstdint>

#include "cuda/runtime.h"

namespace fi::cuda {

class Blas {
 public:
  static constexpr uint64_t kWorkspaceBytes = 32ull << 20;
  Blas(const Stream& stream, void* workspace, uint64_t workspace_bytes);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  // y[t * y_stride + r] = sum_k w[r][k] x[t][k], r < rows, t < tokens, k < cols (+= with
  // accumulate); w and x in half precision, accumulation and y in FP32.
  void gemm(const uint16_t* w, int64_t rows, int64_t cols, const uint16_t* x, int64_t tokens, float* y,
            int64_t y_stride, bool accumulate = false);

 private:
  void* handle_ = nullptr;
};

}  // namespace fi::cuda
