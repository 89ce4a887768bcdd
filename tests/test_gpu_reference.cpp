// The GPU engine's own code on the host-memory reference device (tests/cuda_reference_backend.cpp):
// the same engine and golden checks as test_gpu, runnable on every machine.
#include "cuda/runtime.h"
#include "cuda_reference_device.h"
#include "golden_checks.h"
#include "gpu_engine_checks.h"
#include "host/gpu/gpu_backend.h"
#include "io/error.h"
#include "planner/budget.h"
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

// What the device has free now.
uint64_t device_free() {
  uint64_t free_bytes = 0, total_bytes = 0;
  cuda::device_memory(&free_bytes, &total_bytes);
  return free_bytes;
}

// A prefill and two decode steps; the logits of every position.
std::vector<float> prefill_and_decode(Engine& engine) {
  const auto vocab = static_cast<size_t>(engine.config().vocab);
  std::vector<int32_t> prompt;
  for (int32_t i = 0; i < 6; ++i) prompt.push_back(static_cast<int32_t>((i * 37 + 3) % engine.config().vocab));
  std::vector<float> logits(prompt.size() * vocab);
  engine.forward().eval(prompt, logits.data(), true);
  std::vector<float> step(vocab);
  for (const int32_t token : {5, 9}) {
    engine.forward().eval(std::span<const int32_t>(&token, 1), step.data());
    logits.insert(logits.end(), step.begin(), step.end());
  }
  return logits;
}

// The tiny qwen3moe file beside a GPU (a 64-token context): the VRAM of its dense half and one
// expert cache slot's plan.
struct TinyMoeOnGpu {
  std::string path = test::preset_model("tiny-qwen3moe", "q4_k_m");
  std::unique_ptr<Model> model = Model::open(path, [] {
    ModelOptions options;
    options.context = 64;
    return options;
  }());
  uint64_t dense_half = test::dense_half_gpu_bytes(path);
  GpuExpertCachePlan one = gpu_expert_cache_plan(*model, UINT64_MAX);
};

// On an 8 GiB device the room kept beside the arena for CUDA and cuBLAS is 256 MiB (2% would be
// less); on an 80 GiB one, 2%.
constexpr uint64_t kSmallDevice = 8ull << 30, kSmallReserve = 256ull << 20;

TEST(ReferenceGpuEngine, ArenaRoomIsTheFreeMemoryLessTheRuntimesReserve) {
  {
    const test::ReferenceDeviceMemory device(1ull << 30, kSmallDevice);
    EXPECT_EQ(gpu_arena_room(0), (1ull << 30) - kSmallReserve);
  }
  {
    const test::ReferenceDeviceMemory device(kSmallReserve - 1, kSmallDevice);
    EXPECT_EQ(gpu_arena_room(0), 0u) << "less free than the reserve leaves no room";
  }
  {
    const uint64_t total = 80ull << 30;
    const test::ReferenceDeviceMemory device(40ull << 30, total);
    EXPECT_EQ(gpu_arena_room(0), (40ull << 30) - total / 50);
  }
}

// A nearly full device: --gpu-mem above its room, the automatic budget, and a MoE model's VRAM
// expert cache all stay within the room, so the reserve is still free after passes ran; a room
// below the model's minimum is refused in one line.
TEST(ReferenceGpuEngine, BudgetsAboveTheDevicesRoomAreHeldWithinIt) {
  const std::string path = test::generated_model("gpu-room", test::kTierShape, WeightScheme::Q4_0);
  EngineOptions options{path, 2, 64};
  options.profile = test::gpu_favoured_profile();
  options.gpu_budget = 1ull << 30;
  uint64_t needed = 0;
  std::vector<float> resident;
  {
    Engine engine(options);
    needed = engine.gpu_memory().total();
    resident = prefill_and_decode(engine);
  }
  {
    SCOPED_TRACE("--gpu-mem 1G on a device with room for a sixteenth less than the model");
    const uint64_t room = needed - needed / 16;
    const test::ReferenceDeviceMemory device(kSmallReserve + room, kSmallDevice);
    Engine engine(options);
    ASSERT_TRUE(engine.tiers().has_value()) << "the model is split over the tiers";
    EXPECT_LE(engine.tiers()->gpu_used(), room);
    EXPECT_NE(engine.placement().front().find("is held to " + format_bytes(room)), std::string::npos)
        << engine.placement().front();
    EXPECT_EQ(engine.gpu_budget(), room);
    ASSERT_EQ(engine.tiers()->cpu_layers(), 0) << "every layer still on the GPU";
    EXPECT_EQ(prefill_and_decode(engine), resident);
    EXPECT_GE(device_free(), kSmallReserve);
  }
  {
    SCOPED_TRACE("automatic --gpu-mem");
    const uint64_t free_bytes = kSmallReserve + needed + (8ull << 20);
    const test::ReferenceDeviceMemory device(free_bytes, kSmallDevice);
    EngineOptions automatic = options;
    automatic.gpu_budget.reset();
    automatic.auto_gpu_budget = true;
    Engine engine(automatic);
    ASSERT_TRUE(engine.options().gpu_budget.has_value());
    // 90% of the free memory would leave less than the reserve.
    EXPECT_EQ(*engine.options().gpu_budget, free_bytes - kSmallReserve);
    EXPECT_EQ(engine.gpu_budget(), free_bytes - kSmallReserve);
    EXPECT_FALSE(engine.tiers().has_value()) << "the whole model fits the room";
    EXPECT_EQ(prefill_and_decode(engine), resident);
    EXPECT_GE(device_free(), kSmallReserve);
  }
  {
    SCOPED_TRACE("a room below the minimum");
    const test::ReferenceDeviceMemory device(kSmallReserve + (1ull << 20), kSmallDevice);
    try {
      Engine engine(options);
      FAIL() << "a device with 1 MiB of room was accepted";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("--gpu-mem 1.00 GiB is held to 1.00 MiB"), std::string::npos)
          << error.what();
    }
  }
  {
    SCOPED_TRACE("MoE: the VRAM expert cache within the room");
    const TinyMoeOnGpu moe;
    ASSERT_GT(moe.one.slot_bytes, 0u);
    const test::ReferenceDeviceMemory device(
        kSmallReserve + moe.dense_half + moe.one.scratch + 3 * moe.one.slot_bytes, kSmallDevice);
    EngineOptions moe_options{moe.path, 2, 64};
    moe_options.gpu_budget = 1ull << 30;
    Engine engine(moe_options);
    ASSERT_NE(engine.gpu_expert_cache(), nullptr);
    EXPECT_EQ(engine.gpu_expert_cache()->slots(), 3);
    prefill_and_decode(engine);
    EXPECT_GE(device_free(), kSmallReserve);
  }
}

// What the engine allocates on the device, its high-water mark over loading and passes, against
// --gpu-mem: dense models resident and split over the tiers, MoE models with every expert on the
// device, beside it, and with a cache of experts there.
TEST(ReferenceGpuEngine, DeviceAllocationsStayWithinTheGpuBudget) {
  enum class Placed { Resident, Split, ExpertsBeside, ExpertCache };
  auto expect_within = [](EngineOptions options, uint64_t budget, Placed placed) {
    SCOPED_TRACE(options.model_path + " --gpu-mem " + std::to_string(budget));
    options.gpu_budget = budget;
    const uint64_t before = test::reset_reference_device_peak();
    {
      Engine engine(options);
      EXPECT_EQ(engine.tiers().has_value(), placed == Placed::Split);
      EXPECT_EQ(engine.host_model() != nullptr, placed == Placed::ExpertsBeside || placed == Placed::ExpertCache);
      EXPECT_EQ(engine.gpu_expert_cache() != nullptr, placed == Placed::ExpertCache);
      prefill_and_decode(engine);
      const uint64_t peak = test::reference_device_peak() - before;
      EXPECT_LE(peak, budget) << "device memory's high-water mark";
      const uint64_t planned = engine.tiers() ? engine.tiers()->gpu_used()
                                              : engine.gpu_memory().total() + engine.gpu_expert_cache_plan().total();
      EXPECT_GE(peak, planned) << "the plan's bytes are allocated";
    }
    EXPECT_EQ(test::reference_device_allocated(), before) << "all freed with the engine";
  };
  // Twelve layers: room between the fixed costs and the whole model for splits.
  ModelShape shape = test::kTierShape;
  shape.n_layers = 12;
  const std::string dense = test::generated_model("gpu-allocations", shape, WeightScheme::Q4_0);
  EngineOptions options{dense, 2, 64};
  options.profile = test::gpu_favoured_profile();
  options.gpu_budget = 1ull << 30;
  const uint64_t needed = Engine(options).gpu_memory().total();
  expect_within(options, needed, Placed::Resident);
  for (const uint64_t budget : {needed - needed / 16, needed - needed / 8}) expect_within(options, budget, Placed::Split);

  const TinyMoeOnGpu moe;
  const EngineOptions moe_options{moe.path, 2, 64};
  expect_within(moe_options, gpu_memory_plan(*moe.model).total(), Placed::Resident);
  expect_within(moe_options, moe.dense_half, Placed::ExpertsBeside);
  expect_within(moe_options, moe.dense_half + moe.one.scratch + 3 * moe.one.slot_bytes, Placed::ExpertCache);
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

// Mixtures of experts of other shapes (tests/data/golden): every expert on the device, or
// attention there and the experts on the CPU.
class ReferenceGpuMoeFamilyGolden : public ::testing::TestWithParam<std::tuple<test::FamilyCase, const char*>> {};

TEST_P(ReferenceGpuMoeFamilyGolden, LogitsAndGreedyTokens) {
  const auto& [family, prompt] = GetParam();
  test::check_moe_family_golden(family, prompt, {2ull << 30});
}

TEST_P(ReferenceGpuMoeFamilyGolden, LogitsAndGreedyTokensWithTheExpertsOnTheCpu) {
  const auto& [family, prompt] = GetParam();
  test::GoldenPlacement placement;
  placement.experts_beside_gpu = true;
  test::check_moe_family_golden(family, prompt, placement);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ReferenceGpuMoeFamilyGolden,
                         ::testing::Combine(::testing::ValuesIn(test::kMoeFamilyCases), ::testing::Values("a", "b")),
                         test::family_case_name);

}  // namespace
}  // namespace fi
