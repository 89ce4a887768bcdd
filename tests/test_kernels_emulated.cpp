// The CUDA kernels and their launchers (cuda/kernels.cu itself) run on the CPU under
// tests/cuda_emulation.h, against the same scalar references as the GPU suite: the kernels' logic
// is checked on every machine, CI included. Speed, coalescing and hardware faults need the GPU
// suite (test_gpu).
#include "cuda_emulation.h"

#include "cuda/kernels.cu"

#include <deque>

#include "kernel_checks.h"

// The runtime functions the launchers and the Stream type use; launches cannot fail here.
extern "C" cudaError_t cudaGetLastError() { return cudaSuccess; }
extern "C" const char* cudaGetErrorString(cudaError_t) { return "no error"; }

namespace fi::cuda {
Stream::Stream() = default;
Stream::~Stream() = default;
void Stream::synchronize() const {}
}  // namespace fi::cuda

namespace fi {
namespace {

// "Device" memory is host memory that lives as long as the test.
class HostMemory {
 public:
  template <typename T>
  T* upload(const std::vector<T>& host) {
    return reinterpret_cast<T*>(keep(reinterpret_cast<const uint8_t*>(host.data()), host.size() * sizeof(T)));
  }
  template <typename T>
  T* zeros(size_t count) {
    return reinterpret_cast<T*>(keep(nullptr, count * sizeof(T)));
  }
  template <typename T>
  std::vector<T> download(const T* data, size_t count) {
    return std::vector<T>(data, data + count);
  }
  const cuda::Stream& stream() const { return stream_; }

 private:
  uint8_t* keep(const uint8_t* source, size_t bytes) {
    // 16-byte aligned like device allocations (the kernels' wide loads assume it).
    std::vector<uint64_t>& block = blocks_.emplace_back((bytes + 15) / 8 + 2, 0);
    auto* data = reinterpret_cast<uint8_t*>(block.data());
    data += (16 - reinterpret_cast<uintptr_t>(data) % 16) % 16;
    if (source) std::memcpy(data, source, bytes);
    return data;
  }
  std::deque<std::vector<uint64_t>> blocks_;
  cuda::Stream stream_;
};

class EmulatedKernel : public ::testing::TestWithParam<TensorType> {};

TEST_P(EmulatedKernel, MatvecMatchesTheScalarReference) { test::check_matvec<HostMemory>(GetParam()); }
TEST_P(EmulatedKernel, DequantizeToHalfIsExact) { test::check_dequantize_to_half<HostMemory>(GetParam()); }
TEST_P(EmulatedKernel, EmbeddingRowsEqualDequantizeRow) { test::check_embed<HostMemory>(GetParam()); }
TEST_P(EmulatedKernel, ArbitraryBlockBytesMatchTheScalarReference) {
  if (is_float_type(GetParam())) GTEST_SKIP() << "float rows have no block bytes";
  test::check_arbitrary_blocks<HostMemory>(GetParam());
}

INSTANTIATE_TEST_SUITE_P(AllTypes, EmulatedKernel, test::kAllKernelTypes, test::type_test_name);

TEST(EmulatedKernels, RmsNormBiasAndSwigluMatchTheCpuFormulas) { test::check_norm_and_swiglu<HostMemory>(); }
TEST(EmulatedKernels, ExpertRowsGatherScatterAndAddAsTheCpuDoes) { test::check_expert_rows<HostMemory>(); }
TEST(EmulatedKernels, InterleavedRowsComeBackInPlainBlocks) { test::check_deinterleave_rows<HostMemory>(); }
TEST(EmulatedKernels, RopeCacheAndAttentionMatchTheReference) { test::check_rope_and_attention<HostMemory>(false); }
TEST(EmulatedKernels, NeoxRopeAndAScoreScaleMatchTheReference) { test::check_rope_and_attention<HostMemory>(true, 0.07f); }

}  // namespace
}  // namespace fi
