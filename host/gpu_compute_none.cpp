#include "host/gpu_compute.h"
#include "io/error.h"

namespace fi {

std::unique_ptr<LayerCompute> make_gpu_compute(const LlamaModel&, const GpuOptions&) {
  fail("no CUDA device: this build has no CUDA support (nvcc was not found); leave out --gpu-mem to run on the CPU");
}

}  // namespace fi
