#include <cmath>
#include <map>

#include "host/text/sampler.h"
#include "test_support.h"

namespace fi {
namespace {

std::vector<float> logits_of(std::initializer_list<float> values) { return values; }

TEST(Sampler, TemperatureZeroIsArgmax) {
  Sampler sampler({0.0f, 40, 0.95f, 0.05f, 1.0f, 64, 1});
  auto logits = logits_of({0.1f, 2.0f, -1.0f, 1.9f});
  EXPECT_EQ(sampler.sample(logits.data(), 4, {}), 1);
}

TEST(Sampler, TopKOneIsGreedyAtAnyTemperature) {
  Sampler sampler({1.5f, 1, 1.0f, 0.0f, 1.0f, 64, 3});
  for (int i = 0; i < 50; ++i) {
    auto logits = logits_of({0.1f, 0.3f, 0.2f});
    EXPECT_EQ(sampler.sample(logits.data(), 3, {}), 1);
  }
}

TEST(Sampler, SameSeedSameSequence) {
  auto run = [](uint64_t seed) {
    Sampler sampler({1.0f, 0, 1.0f, 0.0f, 1.0f, 64, seed});
    std::vector<int32_t> picks;
    for (int i = 0; i < 100; ++i) {
      auto logits = logits_of({0.0f, 0.1f, 0.2f, 0.3f, 0.4f});
      picks.push_back(sampler.sample(logits.data(), 5, {}));
    }
    return picks;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  Sampler sampler({1.0f, 0, 1.0f, 0.0f, 1.0f, 64, 9});
  std::map<int32_t, int> counts;
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    auto logits = logits_of({0.0f, std::log(3.0f)});
    ++counts[sampler.sample(logits.data(), 2, {})];
  }
  EXPECT_NEAR(static_cast<double>(counts[1]) / draws, 0.75, 0.02);
}

TEST(Sampler, TopPAndMinPDropTheTail) {
  Sampler top_p({1.0f, 0, 0.5f, 0.0f, 1.0f, 64, 5});
  Sampler min_p({1.0f, 0, 1.0f, 0.5f, 1.0f, 64, 5});
  for (int i = 0; i < 200; ++i) {
    auto a = logits_of({3.0f, 0.0f, 0.0f, 0.0f});  // token 0 has p > 0.5 alone
    EXPECT_EQ(top_p.sample(a.data(), 4, {}), 0);
    auto b = logits_of({2.0f, 2.0f - std::log(4.0f), -5.0f});  // token 1 at 1/4 of the top
    EXPECT_EQ(min_p.sample(b.data(), 3, {}), 0);
  }
}

TEST(Sampler, RepetitionPenaltyDemotesRecentTokens) {
  Sampler sampler({0.0f, 40, 1.0f, 0.0f, 2.0f, 64, 1});
  auto logits = logits_of({1.0f, 1.5f});
  EXPECT_EQ(sampler.sample(logits.data(), 2, {1}), 0);  // 1.5 / 2 < 1.0
}

TEST(Sampler, PresenceAndFrequencyPenaltiesSubtractPerToken) {
  SamplerParams params{0.0f, 40, 1.0f, 0.0f, 1.0f, 64, 1};
  params.presence_penalty = 0.3f;
  Sampler presence(params);
  auto logits = logits_of({1.0f, 1.2f, 0.0f});
  EXPECT_EQ(presence.sample(logits.data(), 3, {1}), 0);  // 1.2 - 0.3 < 1.0
  EXPECT_FLOAT_EQ(logits[1], 0.9f);
  params.presence_penalty = 0.0f;
  params.frequency_penalty = 0.15f;
  Sampler frequency(params);
  logits = logits_of({1.0f, 1.2f, 0.0f});
  EXPECT_EQ(frequency.sample(logits.data(), 3, {1}), 1);  // seen once: 1.05
  logits = logits_of({1.0f, 1.2f, 0.0f});
  EXPECT_EQ(frequency.sample(logits.data(), 3, {1, 2, 1}), 0);  // seen twice: 0.9
  EXPECT_FLOAT_EQ(logits[2], -0.15f);
}

}  // namespace
}  // namespace fi
