// The GPU side: every kernel against a scalar reference on random data, the engine with every
// layer on the device against the CPU engine and the ../shared/data goldens, and the device
// budget. Each test skips, saying why, where no CUDA device is usable.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda/blas.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "golden_checks.h"
#include "gpu_engine_checks.h"
#include "host/engine/engine.h"
#include "io/error.h"
#include "kernel_checks.h"
#include "test_support.h"

namespace fi {
namespace {

// Device memory from one arena per test, freed with it.
class DeviceMemory {
 public:
  DeviceMemory() : arena_(256ull << 20) {}
  template <typename T>
  T* upload(const std::vector<T>& host) {
    T* device = arena_.allocate_array<T>(std::max<size_t>(host.size(), 1), "test data");
    cuda::copy_to_device_async(device, host.data(), host.size() * sizeof(T), stream_);
    stream_.synchronize();  // the host vector may be a temporary
    return device;
  }
  template <typename T>
  T* zeros(size_t count) {
    T* device = arena_.allocate_array<T>(count, "test output");
    cuda::fill_zero_async(device, count * sizeof(T), stream_);
    return device;
  }
  template <typename T>
  std::vector<T> download(const T* device, size_t count) {
    std::vector<T> host(count);
    cuda::copy_to_host_async(host.data(), device, count * sizeof(T), stream_);
    stream_.synchronize();
    return host;
  }
  const cuda::Stream& stream() const { return stream_; }
  cuda::DeviceArena& arena() { return arena_; }

 private:
  cuda::Stream stream_;
  cuda::DeviceArena arena_;
};

class GpuKernel : public ::testing::TestWithParam<TensorType> {};

TEST_P(GpuKernel, MatvecMatchesTheScalarReference) {
  FI_REQUIRE_GPU();
  test::check_matvec<DeviceMemory>(GetParam());
}

TEST_P(GpuKernel, DequantizeToHalfIsExact) {
  FI_REQUIRE_GPU();
  test::check_dequantize_to_half<DeviceMemory>(GetParam());
}

TEST_P(GpuKernel, EmbeddingRowsEqualDequantizeRow) {
  FI_REQUIRE_GPU();
  test::check_embed<DeviceMemory>(GetParam());
}

// The device's own decoding branches (16-byte loads, its half conversions) on any block bytes, not
// only those quantize_row makes.
TEST_P(GpuKernel, ArbitraryBlockBytesMatchTheScalarReference) {
  FI_REQUIRE_GPU();
  if (is_float_type(GetParam())) GTEST_SKIP() << "float rows have no block bytes";
  test::check_arbitrary_blocks<DeviceMemory>(GetParam());
}

// The prefill path end to end: rows dequantized to half, inputs rounded to half, cuBLAS with
// FP32 accumulation. Tolerance 2e-3 of sum |w x|: two half roundings (2^-11 each) per product.
TEST_P(GpuKernel, CublasProductOfDequantizedRowsMatchesTheReference) {
  FI_REQUIRE_GPU();
  const TensorType type = GetParam();
  const int64_t rows = 96, cols = 512, tokens = 20;
  const test::RandomMatrix w = test::random_matrix(type, rows, cols, 13);
  DeviceMemory memory;
  const cuda::DeviceMatrix matrix{type, rows, cols, w.row_bytes, memory.upload(w.bytes)};
  const std::vector<float> x = test::random_floats(static_cast<size_t>(tokens * cols), 17);
  auto* half_w = memory.zeros<uint16_t>(static_cast<size_t>(rows * cols));
  auto* half_x = memory.zeros<uint16_t>(static_cast<size_t>(tokens * cols));
  float* y = memory.zeros<float>(static_cast<size_t>(tokens * rows));
  cuda::dequantize_to_half(matrix, 0, rows, half_w, memory.stream());
  cuda::floats_to_half(memory.upload(x), tokens * cols, half_x, memory.stream());
  cuda::Blas blas(memory.stream(), memory.arena().allocate(cuda::Blas::kWorkspaceBytes, "workspace"),
                  cuda::Blas::kWorkspaceBytes);
  blas.gemm(half_w, rows, cols, half_x, tokens, y, rows);
  const std::vector<float> got = memory.download(y, static_cast<size_t>(tokens * rows));
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      const test::Product expected = test::reference_product(w, x, cols, r, t);
      ASSERT_NEAR(got[t * rows + r], expected.value, 2e-3 * expected.magnitude) << "token " << t << " row " << r;
    }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, GpuKernel, test::kAllKernelTypes, test::type_test_name);

TEST(GpuKernels, RmsNormBiasAndSwigluMatchTheCpuFormulas) {
  FI_REQUIRE_GPU();
  test::check_norm_and_swiglu<DeviceMemory>();
}

TEST(GpuKernels, ExpertRowsGatherScatterAndAddAsTheCpuDoes) {
  FI_REQUIRE_GPU();
  test::check_expert_rows<DeviceMemory>();
}

TEST(GpuKernels, InterleavedRowsComeBackInPlainBlocks) {
  FI_REQUIRE_GPU();
  test::check_deinterleave_rows<DeviceMemory>();
}

TEST(GpuKernels, RopeCacheAndAttentionMatchTheReference) {
  FI_REQUIRE_GPU();
  test::check_rope_and_attention<DeviceMemory>(false);
}

TEST(GpuKernels, NeoxRopeAndAScoreScaleMatchTheReference) {
  FI_REQUIRE_GPU();
  test::check_rope_and_attention<DeviceMemory>(true, 0.07f);
}

class GpuEngine : public ::testing::TestWithParam<test::EngineCase> {};

TEST_P(GpuEngine, LogitsMatchTheCpuEngine) {
  FI_REQUIRE_GPU();
  test::check_gpu_logits_match_cpu(GetParam());
}

TEST_P(GpuEngine, LastLayersDecodedOnTheCpuStayWithinTolerance) {
  FI_REQUIRE_GPU();
  test::check_gpu_cpu_decoded_layers(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Files, GpuEngine, ::testing::ValuesIn(test::kEngineCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(GpuEngine, WeightsSplitOverVramHostAndDiskGiveTheResidentLogits) {
  FI_REQUIRE_GPU();
  test::check_gpu_tiers_bit_identical("q4_0", test::kTierShape, WeightScheme::Q4_0);
  test::check_gpu_tiers_bit_identical("q4_k_m", test::kTierShape, WeightScheme::Q4_K_M);
}

TEST(GpuEngine, TiersRecoverFromAFailedPass) {
  FI_REQUIRE_GPU();
  test::check_gpu_tiers_recover_from_a_failed_pass();
}

TEST(GpuEngine, NewerFamiliesSplitOverTheTiersGiveTheResidentLogits) {
  FI_REQUIRE_GPU();
  test::check_gpu_newer_families_tiers();
}

TEST(GpuEngine, NewerFamiliesMatchTheFloat64Reference) {
  FI_REQUIRE_GPU();
  test::check_gpu_newer_families_reference();
}

TEST(GpuEngine, SequencesSharingPassesEqualEachAlone) {
  FI_REQUIRE_GPU();
  test::check_gpu_sequences_share_passes();
}

TEST(GpuEngine, TraceRecordsReadsUploadsAndComputePerLayer) {
  FI_REQUIRE_GPU();
  test::check_gpu_trace();
}

TEST(GpuEngine, BudgetsBelowTheModelSplitItOrStateTheMinimums) {
  FI_REQUIRE_GPU();
  test::check_gpu_budget();
}

TEST(GpuEngine, ExpertsOnTheGpuOrBesideItOnTheCpuUnderEveryHostBudget) {
  FI_REQUIRE_GPU();
  test::check_gpu_experts();
}

TEST(GpuEngine, AVramExpertCacheBesideTheCpuMatchesUnderEveryHostBudget) {
  FI_REQUIRE_GPU();
  test::check_gpu_expert_cache();
}

TEST(GpuEngine, AVramExpertCacheRecoversFromAFailedPass) {
  FI_REQUIRE_GPU();
  test::check_gpu_expert_cache_recovers_from_a_failed_pass();
}

TEST(GpuGolden, Stories260KGreedyTextFromEmptyPrompt) {
  FI_REQUIRE_GPU();
  FI_REQUIRE_SHARED_DATA();
  test::check_stories260k_greedy_text({1ull << 30});
}

TEST(GpuGolden, Stories260KGreedyTextWithCpuDecodedLayers) {
  FI_REQUIRE_GPU();
  FI_REQUIRE_SHARED_DATA();
  test::check_stories260k_greedy_text({std::nullopt, true});
}

TEST(GpuGolden, Stories260KSentenceNegativeLogLikelihood) {
  FI_REQUIRE_GPU();
  FI_REQUIRE_SHARED_DATA();
  test::check_stories260k_sentence_nll({1ull << 30});
}

class GpuTinyLlamaGolden : public ::testing::TestWithParam<std::tuple<test::TinyCase, const char*>> {};

TEST_P(GpuTinyLlamaGolden, LogitsAndGreedyTokens) {
  FI_REQUIRE_GPU();
  FI_REQUIRE_SHARED_DATA();
  const auto& [tiny, prompt] = GetParam();
  test::check_tiny_llama(tiny, prompt, {2ull << 30});
}

TEST_P(GpuTinyLlamaGolden, LogitsAndGreedyTokensWithCpuDecodedLayers) {
  FI_REQUIRE_GPU();
  FI_REQUIRE_SHARED_DATA();
  const auto& [tiny, prompt] = GetParam();
  test::check_tiny_llama(tiny, prompt, {std::nullopt, true});
}

INSTANTIATE_TEST_SUITE_P(
    AllFiles, GpuTinyLlamaGolden, ::testing::Combine(::testing::ValuesIn(test::kTinyCases), ::testing::Values("a", "b")),
    [](const auto& info) { return std::string(std::get<0>(info.param).type) + "_prompt_" + std::get<1>(info.param); });

class GpuFamilyGolden : public ::testing::TestWithParam<std::tuple<test::FamilyCase, const char*>> {};

TEST_P(GpuFamilyGolden, LogitsAndGreedyTokens) {
  FI_REQUIRE_GPU();
  const auto& [family, prompt] = GetParam();
  test::check_family_golden(family, prompt, {2ull << 30});
}

TEST_P(GpuFamilyGolden, LogitsAndGreedyTokensWithCpuDecodedLayers) {
  FI_REQUIRE_GPU();
  const auto& [family, prompt] = GetParam();
  test::check_family_golden(family, prompt, {std::nullopt, true});
}

INSTANTIATE_TEST_SUITE_P(Families, GpuFamilyGolden,
                         ::testing::Combine(::testing::ValuesIn(test::kFamilyCases), ::testing::Values("a", "b")),
                         test::family_case_name);

class GpuMoeGolden : public ::testing::TestWithParam<std::tuple<test::MoeCase, const char*>> {};

TEST_P(GpuMoeGolden, LogitsAndGreedyTokens) {
  FI_REQUIRE_GPU();
  FI_REQUIRE_SHARED_DATA();
  const auto& [moe, prompt] = GetParam();
  test::check_moe_golden(moe, prompt, {2ull << 30});
}

TEST_P(GpuMoeGolden, LogitsAndGreedyTokensWithTheExpertsOnTheCpu) {
  FI_REQUIRE_GPU();
  FI_REQUIRE_SHARED_DATA();
  const auto& [moe, prompt] = GetParam();
  test::GoldenPlacement placement;
  placement.experts_beside_gpu = true;
  test::check_moe_golden(moe, prompt, placement);
}

INSTANTIATE_TEST_SUITE_P(SharedFiles, GpuMoeGolden,
                         ::testing::Combine(::testing::ValuesIn(test::kMoeCases), ::testing::Values("a", "b")),
                         test::moe_case_name);

// Mixtures of experts of other shapes (tests/data/golden): every expert on the device, or
// attention there and the experts on the CPU.
class GpuMoeFamilyGolden : public ::testing::TestWithParam<std::tuple<test::FamilyCase, const char*>> {};

TEST_P(GpuMoeFamilyGolden, LogitsAndGreedyTokens) {
  FI_REQUIRE_GPU();
  const auto& [family, prompt] = GetParam();
  test::check_moe_family_golden(family, prompt, {2ull << 30});
}

TEST_P(GpuMoeFamilyGolden, LogitsAndGreedyTokensWithTheExpertsOnTheCpu) {
  FI_REQUIRE_GPU();
  const auto& [family, prompt] = GetParam();
  test::GoldenPlacement placement;
  placement.experts_beside_gpu = true;
  test::check_moe_family_golden(family, prompt, placement);
}

INSTANTIATE_TEST_SUITE_P(Shapes, GpuMoeFamilyGolden,
                         ::testing::Combine(::testing::ValuesIn(test::kMoeFamilyCases), ::testing::Values("a", "b")),
                         test::family_case_name);

}  // namespace
}  // namespace fi
