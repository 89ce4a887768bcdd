#include <cublas_v2.h>
#include <dlfcn.h>

#include <string>
#include <type_traits>

#include "cuda/blas.h"
#include "cuda/check.cuh"

namespace fi::cuda {

namespace {

// cuBLAS is loaded when the GPU path first needs it, not linked: mapping its libraries costs tens
// of MB of page cache and start-up time in every CPU-only run (and inside every memory cgroup).
struct BlasLibrary {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetWorkspace_v2) set_workspace = nullptr;
  // Spelled out: C++ sees an older cublasGemmEx overload too.
  cublasStatus_t (*gemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*, const void*,
                         cudaDataType, int, const void*, cudaDataType, int, const void*, void*, cudaDataType, int,
                         cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
};

const BlasLibrary& blas_library() {
  static const BlasLibrary library = [] {
    // The loader's search path first, then the toolkit this was built with.
    const std::string name = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
    void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) handle = dlopen((std::string(FLEXINFER_CUDA_LIBRARY_DIR "/") + name).c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) fail("cuBLAS could not be loaded (%s): %s", name.c_str(), dlerror());
    auto symbol = [&](auto& function, const char* symbol_name) {
      function = reinterpret_cast<std::remove_reference_t<decltype(function)>>(dlsym(handle, symbol_name));
      if (!function) fail("cuBLAS (%s) has no symbol %s", name.c_str(), symbol_name);
    };
    BlasLibrary loaded;
    symbol(loaded.create, "cublasCreate_v2");
    symbol(loaded.destroy, "cublasDestroy_v2");
    symbol(loaded.set_stream, "cublasSetStream_v2");
    symbol(loaded.set_workspace, "cublasSetWorkspace_v2");
    symbol(loaded.gemm, "cublasGemmEx");
    symbol(loaded.status_string, "cublasGetStatusString");
    return loaded;
  }();
  return library;
}

void check_blas(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail("cuBLAS error: %s failed: %s", call, blas_library().status_string(status));
}

cublasHandle_t native_blas(void* handle) { return static_cast<cublasHandle_t>(handle); }

}  // namespace

Blas::Blas(const Stream& stream, void* workspace, uint64_t workspace_bytes) {
  const BlasLibrary& blas = blas_library();
  cublasHandle_t handle = nullptr;
  check_blas(blas.create(&handle), "cublasCreate");
  handle_ = handle;
  check_blas(blas.set_stream(handle, native(stream.handle())), "cublasSetStream");
  check_blas(blas.set_workspace(handle, workspace, workspace_bytes), "cublasSetWorkspace");
}

Blas::~Blas() { blas_library().destroy(native_blas(handle_)); }

void Blas::gemm(const uint16_t* w, int64_t rows, int64_t cols, const uint16_t* x, int64_t tokens, float* y,
                int64_t y_stride, bool accumulate) {
  // Column-major view: w (rows x cols, row-major) is a cols x rows matrix, used transposed;
  // x (tokens x cols) is cols x tokens; y is rows x tokens with leading dimension y_stride.
  const float one = 1.0f, keep = accumulate ? 1.0f : 0.0f;
  const cudaDataType input_type = CUDA_R_16F;
  check_blas(blas_library().gemm(native_blas(handle_), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows),
                                 static_cast<int>(tokens), static_cast<int>(cols), &one, w, input_type,
                                 static_cast<int>(cols), x, input_type, static_cast<int>(cols), &keep, y, CUDA_R_32F,
                                 static_cast<int>(y_stride), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             "cublasGemmEx");
}

}  // namespace fi::cuda
