// End-to-end against outputs of independent implementations (../shared/data/golden).
#include "golden_checks.h"
#include "test_support.h"

namespace fi {
namespace {

TEST(Golden, Stories260KGreedyTextFromEmptyPrompt) {
  FI_REQUIRE_SHARED_DATA();
  test::check_stories260k_greedy_text({});
}

TEST(Golden, Stories260KSentenceNegativeLogLikelihood) {
  FI_REQUIRE_SHARED_DATA();
  test::check_stories260k_sentence_nll({});
}

class TinyLlamaGolden : public ::testing::TestWithParam<std::tuple<test::TinyCase, const char*>> {};

TEST_P(TinyLlamaGolden, LogitsAndGreedyTokens) {
  FI_REQUIRE_SHARED_DATA();
  const auto& [tiny, prompt] = GetParam();
  test::check_tiny_llama(tiny, prompt, {});
}

INSTANTIATE_TEST_SUITE_P(
    AllFiles, TinyLlamaGolden, ::testing::Combine(::testing::ValuesIn(test::kTinyCases), ::testing::Values("a", "b")),
    [](const auto& info) { return std::string(std::get<0>(info.param).type) + "_prompt_" + std::get<1>(info.param); });

// Mixture of experts (Qwen3-MoE, Mixtral) against llama.cpp, on the CPU with everything resident
// and with --host-mem at the minimum (the stacked expert tensors streamed).
class MoeGolden : public ::testing::TestWithParam<std::tuple<test::MoeCase, const char*>> {};

TEST_P(MoeGolden, LogitsAndGreedyTokens) {
  FI_REQUIRE_SHARED_DATA();
  const auto& [moe, prompt] = GetParam();
  test::check_moe_golden(moe, prompt, {});
}

TEST_P(MoeGolden, LogitsAndGreedyTokensAtTheMinimumHostBudget) {
  FI_REQUIRE_SHARED_DATA();
  const auto& [moe, prompt] = GetParam();
  test::check_moe_golden(moe, prompt, {std::nullopt, false, true});
}

INSTANTIATE_TEST_SUITE_P(SharedFiles, MoeGolden,
                         ::testing::Combine(::testing::ValuesIn(test::kMoeCases), ::testing::Values("a", "b")),
                         test::moe_case_name);

// The newer families against llama.cpp (tests/data/golden), on the CPU with everything resident and
// with --host-mem at the minimum.
class FamilyGolden : public ::testing::TestWithParam<std::tuple<test::FamilyCase, const char*>> {};

TEST_P(FamilyGolden, LogitsAndGreedyTokens) {
  const auto& [family, prompt] = GetParam();
  test::check_family_golden(family, prompt, {});
}

TEST_P(FamilyGolden, LogitsAndGreedyTokensAtTheMinimumHostBudget) {
  const auto& [family, prompt] = GetParam();
  test::check_family_golden(family, prompt, {std::nullopt, false, true});
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyGolden,
                         ::testing::Combine(::testing::ValuesIn(test::kFamilyCases), ::testing::Values("a", "b")),
                         test::family_case_name);

// Mixtures of experts of other shapes (tests/data/golden), on the CPU with everything resident and
// with --host-mem at the minimum.
class MoeFamilyGolden : public ::testing::TestWithParam<std::tuple<test::FamilyCase, const char*>> {};

TEST_P(MoeFamilyGolden, LogitsAndGreedyTokens) {
  const auto& [family, prompt] = GetParam();
  test::check_moe_family_golden(family, prompt, {});
}

TEST_P(MoeFamilyGolden, LogitsAndGreedyTokensAtTheMinimumHostBudget) {
  const auto& [family, prompt] = GetParam();
  test::check_moe_family_golden(family, prompt, {std::nullopt, false, true});
}

INSTANTIATE_TEST_SUITE_P(Shapes, MoeFamilyGolden,
                         ::testing::Combine(::testing::ValuesIn(test::kMoeFamilyCases), ::testing::Values("a", "b")),
                         test::family_case_name);

}  // namespace
}  // namespace fi
