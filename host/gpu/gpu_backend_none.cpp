#include "host/gpu/gpu_backend.h"
#include "io/error.h"

namespace fi {

void require_gpu(int) {
  fail("no CUDA device: this build has no CUDA support (nvcc was not found); leave out --gpu-mem to run on the CPU");
}

uint64_t gpu_arena_room(int device) {
  require_gpu(device);
  return 0;
}

std::unique_ptr<Backend> make_gpu_backend(const Model&, const GpuOptions& options) {
  require_gpu(options.device);
  return nullptr;
}

}  // namespace fi
