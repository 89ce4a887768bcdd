// The GPU engine's own code on the host-memory reference device (tests/cuda_reference_backend.cpp):
// the same engine and golden checks as test_gpu, runnable on every machine.
#include "golden_checks.h"
#include "gpu_engine_checks.h"
#include "test_support.h"

namespace fi {
namespace {

class ReferenceGpuEngine : public ::testing::TestWithParam<test::EngineCase> {};

TEST_P(ReferenceGpuEngine, LogitsMatchTheCpuEngine) { test::check_gpu_logits_match_cpu(GetParam()); }

TEST_P(ReferenceGpuEngine, LastLayersDecodedOnTheCpuStayWithinTolerance) {
  test::check_gpu_cpu_decoded_layers(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Files, ReferenceGpuEngine, ::testing::ValuesIn(test::kEngineCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ReferenceGpuEngine, WeightsSplitOverVramHostAndDiskGiveTheResidentLogits) {
  test::check_gpu_tiers_bit_identical("q4_0", test::kTierShape, WeightScheme::Q4_0);
  test::check_gpu_tiers_bit_identical("q4_k_m", test::kTierShape, WeightScheme::Q4_K_M);
}

TEST(ReferenceGpuEngine, TiersRecoverFromAFailedPass) { test::check_gpu_tiers_recover_from_a_failed_pass(); }

TEST(ReferenceGpuEngine, NewerFamiliesSplitOverTheTiersGiveTheResidentLogits) { test::check_gpu_newer_families_tiers(); }

TEST(ReferenceGpuEngine, NewerFamiliesMatchTheFloat64Reference) { test::check_gpu_newer_families_reference(); }

TEST(ReferenceGpuEngine, SequencesSharingPassesEqualEachAlone) { test::check_gpu_sequences_share_passes(); }

TEST(ReferenceGpuEngine, TraceRecordsReadsUploadsAndComputePerLayer) {
  test::check_gpu_trace();
}

TEST(ReferenceGpuEngine, BudgetsBelowTheModelSplitItOrStateTheMinimums) { test::check_gpu_budget(); }

TEST(ReferenceGpuEngine, ExpertsOnTheGpuOrBesideItOnTheCpuUnderEveryHostBudget) { test::check_gpu_experts(); }
TEST(ReferenceGpuEngine, AVramExpertCacheBesideTheCpuMatchesUnderEveryHostBudget) { test::check_gpu_expert_cache(); }

TEST(ReferenceGpuEngine, AVramExpertCacheRecoversFromAFailedPass) {
  test::check_gpu_expert_cache_recovers_from_a_failed_pass();
}

TEST(ReferenceGpuGolden, Stories260KGreedyTextFromEmptyPrompt) {
  FI_REQUIRE_SHARED_DATA();
  test::check_stories260k_greedy_text({1ull << 30});
}

TEST(ReferenceGpuGolden, Stories260KGreedyTextWithCpuDecodedLayers) {
  FI_REQUIRE_SHARED_DATA();
  test::check_stories260k_greedy_text({std::nullopt, true});
}

TEST(ReferenceGpuGolden, Stories260KSentenceNegativeLogLikelihood) {
  FI_REQUIRE_SHARED_DATA();
  test::check_stories260k_sentence_nll({1ull << 30});
}

class ReferenceGpuTinyLlamaGolden : public ::testing::TestWithParam<std::tuple<test::TinyCase, const char*>> {};

TEST_P(ReferenceGpuTinyLlamaGolden, LogitsAndGreedyTokens) {
  FI_REQUIRE_SHARED_DATA();
  const auto& [tiny, prompt] = GetParam();
  test::check_tiny_llama(tiny, prompt, {2ull << 30});
}

TEST_P(ReferenceGpuTinyLlamaGolden, LogitsAndGreedyTokensWithCpuDecodedLayers) {
  FI_REQUIRE_SHARED_DATA();
  const auto& [tiny, prompt] = GetParam();
  test::check_tiny_llama(tiny, prompt, {std::nullopt, true});
}

INSTANTIATE_TEST_SUITE_P(
    AllFiles, ReferenceGpuTinyLlamaGolden,
    ::testing::Combine(::testing::ValuesIn(test::kTinyCases), ::testing::Values("a", "b")),
    [](const auto& info) { return std::string(std::get<0>(info.param).type) + "_prompt_" + std::get<1>(info.param); });

// The newer families against llama.cpp with every layer on the device, and with the last layers
// decoded on the CPU.
class ReferenceGpuFamilyGolden : public ::testing::TestWithParam<std::tuple<test::FamilyCase, const char*>> {};

TEST_P(ReferenceGpuFamilyGolden, LogitsAndGreedyTokens) {
  const auto& [family, prompt] = GetParam();
  test::check_family_golden(family, prompt, {2ull << 30});
}

TEST_P(ReferenceGpuFamilyGolden, LogitsAndGreedyTokensWithCpuDecodedLayers) {
  const auto& [family, prompt] = GetParam();
  test::check_family_golden(family, prompt, {std::nullopt, true});
}

// Mixture of experts against llama.cpp: every expert on the device, or attention there and the
// experts on the CPU.
class ReferenceGpuMoeGolden : public ::testing::TestWithParam<std::tuple<test::MoeCase, const char*>> {};

TEST_P(ReferenceGpuMoeGolden, LogitsAndGreedyTokens) {
  FI_REQUIRE_SHARED_DATA();
  const auto& [moe, prompt] = GetParam();
  test::check_moe_golden(moe, prompt, {2ull << 30});
}

TEST_P(ReferenceGpuMoeGolden, LogitsAndGreedyTokensWithTheExpertsOnTheCpu) {
  FI_REQUIRE_SHARED_DATA();
  const auto& [moe, prompt] = GetParam();
  test::GoldenPlacement placement;
  placement.experts_beside_gpu = true;
  test::check_moe_golden(moe, prompt, placement);
}

INSTANTIATE_TEST_SUITE_P(SharedFiles, ReferenceGpuMoeGolden,
                         ::testing::Combine(::testing::ValuesIn(test::kMoeCases), ::testing::Values("a", "b")),
                         test::moe_case_name);

INSTANTIATE_TEST_SUITE_P(Families, ReferenceGpuFamilyGolden,
                         ::testing::Combine(::testing::ValuesIn(test::kFamilyCases), ::testing::Values("a", "b")),
                         test::family_case_name);

}  // namespace
}  // namespace fi
