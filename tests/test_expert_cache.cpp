// Experts read on demand: the cache brings each chosen expert's exact bytes from the file, never
// reads an expert it holds, reads each expert a batch chose once, and its policies keep what they
// promise (frequency keeps a favourite through a scan, recency does not). Experts predicted for a
// later layer are read ahead, never twice, without changing any result.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <set>

#include "host/engine/host_model.h"
#include "host/kernels/repack.h"
#include "io/gguf.h"
#include "test_support.h"

namespace fi {
namespace {

// F32 weights (never interleaved): a slot's bytes are the file's bytes.
const ModelShape kShape{64, 3, 4, 2, 96, 256, 0, 10000.0, false, "qwen3moe", 16, {}, false, 8, 2, 32, 0.0};

std::string model_path() { return test::generated_model("expert_cache_f32", kShape, WeightScheme::F32); }

std::vector<uint8_t> file_bytes(const std::string& path, uint64_t offset, uint64_t bytes) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::vector<uint8_t> data(bytes);
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(bytes));
  return data;
}

// The expert's three slices in the file, in tensor order (gate, up, down).
std::vector<std::vector<uint8_t>> expert_in_file(const std::string& path, const PlanExperts& experts, int64_t layer,
                                                 int32_t expert) {
  std::vector<std::vector<uint8_t>> slices;
  for (const FileRange& range : experts.ranges(layer, expert)) slices.push_back(file_bytes(path, range.begin, range.end - range.begin));
  return slices;
}

// Calls f(expert, weights) for every expert of each group the cache hands over.
template <typename F>
ExpertUse each(F f) {
  return [f](std::span<const ReadyExpert> ready) {
    for (const ReadyExpert& r : ready) f(r.expert, *r.weights);
  };
}

// A plan whose cache holds `slots` experts (the smallest budget, then the slot count set).
struct Cached {
  std::unique_ptr<HostModel> model;
  ExpertCachePlan plan;
};

Cached cached_plan(ThreadPool& pool) {
  HostModelOptions options;
  options.model.context = 32;
  const uint64_t minimum = HostModel::load(model_path(), pool, options)->plan().minimum_host_bytes;
  options.host_budget = minimum;
  Cached c{HostModel::load(model_path(), pool, options), {}};
  c.plan = c.model->plan().expert_cache;
  return c;
}

// A cache of `slots` slots over the smallest budget's plan; the model stays alive for the plan.
struct SmallCache {
  SmallCache(ThreadPool& pool, int64_t slots, const ExpertCacheOptions& options)
      : source(cached_plan(pool)), plan(with_slots(source.plan, slots)), arena(std::nullopt, false),
        cache(model_path(), plan, arena, pool, {}, options) {}
  static ExpertCachePlan with_slots(ExpertCachePlan plan, int64_t slots) {
    plan.slots = slots;
    return plan;
  }
  Cached source;
  ExpertCachePlan plan;
  HostArena arena;
  ExpertCache cache;
};

TEST(ExpertCache, TheSmallestBudgetReadsExpertsOnDemand) {
  ThreadPool pool(2);
  const Cached c = cached_plan(pool);
  ASSERT_TRUE(c.model->plan().caches_experts());
  EXPECT_EQ(c.plan.slots, minimum_expert_slots(c.plan.experts));
  EXPECT_LE(c.model->arena().used(), *c.model->plan().host_budget);
}

TEST(ExpertCache, SlotsHoldTheFilesBytesAndCachedExpertsAreNotReadAgain) {
  ThreadPool pool(2);
  SmallCache small(pool, 6, {ExpertPolicy::Recency});
  const ExpertCachePlan& plan = small.plan;
  ExpertCache& cache = small.cache;
  const std::vector<int32_t> first = {1, 4, 6, 7};
  std::vector<int32_t> seen;
  auto check = [&](int64_t layer) {
    return each([&, layer](int32_t expert, const ExpertWeights& w) {
      seen.push_back(expert);
      const auto slices = expert_in_file(model_path(), plan.experts, layer, expert);
      const WeightMatrix* views[3] = {&w.gate, &w.up, &w.down};
      for (size_t i = 0; i < 3; ++i) {
        ASSERT_FALSE(views[i]->interleaved);
        ASSERT_EQ(static_cast<uint64_t>(views[i]->rows) * views[i]->row_bytes, slices[i].size());
        EXPECT_EQ(0, std::memcmp(views[i]->data, slices[i].data(), slices[i].size())) << "expert " << expert << " slice " << i;
      }
    });
  };
  cache.use(1, first, true, check(1));
  EXPECT_EQ(std::multiset<int32_t>(seen.begin(), seen.end()), std::multiset<int32_t>(first.begin(), first.end()));
  const uint64_t read_once = cache.stats().bytes_read;
  EXPECT_EQ(cache.stats().hits, 0u);
  // The same experts again: all hits, nothing read, handed over in one group.
  seen.clear();
  size_t groups = 0;
  const ExpertUse checked = check(1);
  cache.use(1, first, true, [&](std::span<const ReadyExpert> ready) {
    ++groups;
    checked(ready);
  });
  EXPECT_EQ(groups, 1u);
  EXPECT_EQ(seen.size(), first.size());
  EXPECT_EQ(cache.stats().hits, first.size());
  EXPECT_EQ(cache.stats().bytes_read, read_once);
  // Another layer's experts of the same numbers are other experts.
  cache.use(2, std::vector<int32_t>{1, 4}, true, check(2));
  EXPECT_EQ(cache.stats().hits, first.size());
  EXPECT_GT(cache.stats().bytes_read, read_once);
  // More experts in one call than slots: each still used once, with the right bytes.
  seen.clear();
  const std::vector<int32_t> all = {0, 1, 2, 3, 4, 5, 6, 7};
  cache.use(0, all, true, check(0));
  EXPECT_EQ(std::set<int32_t>(seen.begin(), seen.end()).size(), all.size());
  EXPECT_EQ(seen.size(), all.size());
}

// The disk measurement for the limit reads through the cache's own reader and slots: the slots it
// used are empty afterwards (their experts read again when chosen, with the right bytes), the others
// stay cached, and nothing counts as the cache's reads.
TEST(ExpertCache, MeasuringExpertReadsEmptiesOnlyTheSlotsItUsed) {
  ThreadPool pool(2);
  SmallCache small(pool, 6, {ExpertPolicy::Recency});
  ExpertCache& cache = small.cache;
  const std::vector<int32_t> chosen = {1, 4, 6, 7};  // into slots 0 to 3
  cache.use(1, chosen, true, each([](int32_t, const ExpertWeights&) {}));
  const ExpertCacheStats before = cache.stats();
  const double rate = cache.read_only_GBps(256 << 10, 2);
  EXPECT_GT(rate, 0.0);
  EXPECT_TRUE(std::isfinite(rate));
  EXPECT_EQ(cache.stats().bytes_read, before.bytes_read);
  EXPECT_EQ(cache.stats().experts_read, before.experts_read);
  std::vector<int32_t> seen;
  cache.use(1, chosen, true, each([&](int32_t expert, const ExpertWeights& w) {
    seen.push_back(expert);
    const auto slices = expert_in_file(model_path(), small.plan.experts, 1, expert);
    const WeightMatrix* views[3] = {&w.gate, &w.up, &w.down};
    for (size_t i = 0; i < 3; ++i)
      EXPECT_EQ(0, std::memcmp(views[i]->data, slices[i].data(), slices[i].size())) << "expert " << expert << " slice " << i;
  }));
  EXPECT_EQ(std::multiset<int32_t>(seen.begin(), seen.end()), std::multiset<int32_t>(chosen.begin(), chosen.end()));
  EXPECT_EQ(cache.stats().hits - before.hits, 2u) << "experts 6 and 7 stay cached, 1 and 4 are read again";
  EXPECT_EQ(cache.stats().experts_read - before.experts_read, 2u);
}

// Hits over a scan of other experts after one favourite was chosen often.
uint64_t favourite_hits(ExpertPolicy policy) {
  ThreadPool pool(1);
  SmallCache small(pool, 4, {policy});
  ExpertCache& cache = small.cache;
  auto nothing = [](std::span<const ReadyExpert>) {};
  for (int i = 0; i < 5; ++i) cache.use(0, std::vector<int32_t>{0}, true, nothing);
  // A scan of six others (more than the slots), then the favourite again.
  for (int32_t e = 1; e <= 6; ++e) cache.use(0, std::vector<int32_t>{e}, true, nothing);
  const uint64_t before = cache.stats().hits;
  cache.use(0, std::vector<int32_t>{0}, true, nothing);
  return cache.stats().hits - before;
}

TEST(ExpertCache, FrequencyKeepsAFavouriteThroughAScanAndRecencyDoesNot) {
  EXPECT_EQ(favourite_hits(ExpertPolicy::Frequency), 1u);
  EXPECT_EQ(favourite_hits(ExpertPolicy::Recency), 0u);
}

TEST(ExpertCache, APromptReadsEachChosenExpertOncePerLayer) {
  ThreadPool pool(2);
  HostModelOptions options;
  options.model.context = 64;
  options.host_budget = HostModel::load(model_path(), pool, options)->plan().minimum_host_bytes;
  const auto model = HostModel::load(model_path(), pool, options);
  ASSERT_TRUE(model->plan().caches_experts());
  Forward forward(model->model(), make_cpu_backend(*model, pool));
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back((i * 53 + 11) % 256);
  std::vector<float> logits(static_cast<size_t>(model->config().vocab));
  forward.eval(prompt, logits.data());
  const ExpertCacheStats stats = model->store().expert_cache()->stats();
  // 40 tokens choose 2 of 8 experts each: every layer uses (at most) all 8, each once.
  EXPECT_LE(stats.uses, static_cast<uint64_t>(kShape.n_layers * kShape.n_experts));
  EXPECT_GE(stats.uses, static_cast<uint64_t>(kShape.n_layers * 4));
  EXPECT_EQ(stats.hits, 0u);
  const uint64_t slot = model->plan().expert_cache.slot_bytes;
  EXPECT_LE(stats.bytes_read, stats.uses * slot);
}

// make-model's routing, as the cache sees it: a prompt's distinct experts per layer (its uses).
// Random routing of t tokens choosing k of n each leaves an expert unchosen with probability
// (1 - k/n)^t. An unskewed router must come near that in every layer, deep ones too (tokens' states
// that converge with depth would choose the same few); a skewed one must concentrate.
double prompt_uses_over_random(double router_skew) {
  ModelShape shape = kShape;
  shape.n_layers = 24;
  shape.n_experts = 32;
  shape.n_experts_used = 4;
  shape.router_skew = router_skew;
  const std::string path =
      test::generated_model(router_skew > 0 ? "expert_routing_skewed" : "expert_routing_unskewed", shape, WeightScheme::F32);
  ThreadPool pool(2);
  HostModelOptions options;
  options.model.context = 64;
  options.host_budget = HostModel::load(path, pool, options)->plan().minimum_host_bytes;
  const auto model = HostModel::load(path, pool, options);
  EXPECT_TRUE(model->plan().caches_experts());
  if (!model->plan().caches_experts()) return 0;
  Forward forward(model->model(), make_cpu_backend(*model, pool));
  std::vector<int32_t> prompt;
  for (int i = 0; i < 16; ++i) prompt.push_back((i * 53 + 11) % 256);
  std::vector<float> logits(static_cast<size_t>(model->config().vocab));
  forward.eval(prompt, logits.data());
  const double n = static_cast<double>(shape.n_experts), k = static_cast<double>(shape.n_experts_used);
  const double random_uses = static_cast<double>(shape.n_layers) * n *
                             (1.0 - std::pow(1.0 - k / n, static_cast<double>(prompt.size())));
  return static_cast<double>(model->store().expert_cache()->stats().uses) / random_uses;
}

TEST(ExpertCache, MakeModelRoutesUnskewedTokensAsRandomlyAsRandomRouting) {
  EXPECT_GT(prompt_uses_over_random(0.0), 0.85);
  EXPECT_LT(prompt_uses_over_random(4.0), 0.75);
}

TEST(ExpertCache, ExpectedExpertsAreReadAheadAndNeverTwice) {
  ThreadPool pool(2);
  SmallCache small(pool, 6, {ExpertPolicy::Recency});
  const ExpertCachePlan& plan = small.plan;
  ExpertCache& cache = small.cache;
  std::vector<int32_t> seen;
  auto check = [&](int64_t layer) {
    return each([&, layer](int32_t expert, const ExpertWeights& w) {
      seen.push_back(expert);
      const auto slices = expert_in_file(model_path(), plan.experts, layer, expert);
      EXPECT_EQ(0, std::memcmp(w.gate.data, slices[0].data(), slices[0].size())) << "expert " << expert;
      EXPECT_EQ(0, std::memcmp(w.down.data, slices[2].data(), slices[2].size())) << "expert " << expert;
    });
  };
  // Layer 2 will likely choose 3 and 5: read while layer 1 computes, after its own expert.
  cache.expect(2, std::vector<int32_t>{3, 5});
  cache.use(1, std::vector<int32_t>{1}, true, check(1));
  EXPECT_EQ(cache.stats().experts_read, 3u);
  EXPECT_EQ(cache.stats().speculative_reads, 2u);
  // It chooses 3 (read ahead: not read again) and 6.
  seen.clear();
  cache.use(2, std::vector<int32_t>{3, 6}, true, check(2));
  EXPECT_EQ(std::set<int32_t>(seen.begin(), seen.end()), (std::set<int32_t>{3, 6}));
  EXPECT_EQ(cache.stats().experts_read, 4u);
  EXPECT_EQ(cache.stats().speculative_used, 1u);
  EXPECT_GT(cache.stats().speculative_bytes_wasted, 0u);  // 5, which layer 2 did not choose
  // 5 was read ahead in vain (a wrong prediction, whatever comes later) but is cached now.
  cache.use(2, std::vector<int32_t>{5}, true, check(2));
  EXPECT_EQ(cache.stats().experts_read, 4u);
  EXPECT_EQ(cache.stats().speculative_used, 1u);
  // A prediction for experts already cached reads nothing; one left in flight at destruction is
  // waited for (the sanitizers watch the slot memory).
  cache.expect(2, std::vector<int32_t>{3, 5, 6});
  cache.use(0, std::vector<int32_t>{0}, true, check(0));
  EXPECT_EQ(cache.stats().experts_read, 5u);
  cache.expect(0, std::vector<int32_t>{7});
  cache.use(1, std::vector<int32_t>{1}, true, check(1));
  EXPECT_EQ(cache.stats().speculative_reads, 3u);
}

// Reading a prediction's uncached experts must not evict its cached ones (under recency those
// are the least recently used: they were used one pass ago).
TEST(ExpertCache, APredictionsReadsDoNotEvictItsCachedExperts) {
  ThreadPool pool(1);
  SmallCache small(pool, 3, {ExpertPolicy::Recency});
  ExpertCache& cache = small.cache;
  auto nothing = [](std::span<const ReadyExpert>) {};
  cache.use(0, std::vector<int32_t>{0}, true, nothing);
  cache.use(1, std::vector<int32_t>{1}, true, nothing);
  cache.use(1, std::vector<int32_t>{2}, true, nothing);
  EXPECT_EQ(cache.stats().experts_read, 3u);
  cache.expect(1, std::vector<int32_t>{1, 3});
  cache.use(0, std::vector<int32_t>{0}, true, nothing);
  EXPECT_EQ(cache.stats().experts_read, 4u);  // 3 read ahead, into 2's slot
  cache.use(1, std::vector<int32_t>{1, 3}, true, nothing);
  EXPECT_EQ(cache.stats().experts_read, 4u) << "1 was evicted by its own prediction's read";
  EXPECT_EQ(cache.stats().speculative_used, 1u);
  EXPECT_EQ(cache.stats().speculative_bytes_wasted, 0u);
}

TEST(ExpertCache, ReadingAheadPausesWhilePredictionsAreWrongAndResumes) {
  ThreadPool pool(1);
  SmallCache small(pool, 3, {ExpertPolicy::Recency});
  ExpertCache& cache = small.cache;
  auto nothing = [](std::span<const ReadyExpert>) {};
  auto step = [&](int32_t predicted, int32_t chosen) {
    cache.expect(1, std::vector<int32_t>{predicted});
    cache.use(0, std::vector<int32_t>{0}, true, nothing);
    cache.use(1, std::vector<int32_t>{chosen}, true, nothing);
  };
  for (int i = 0; i < 40; ++i) step(2 + i % 6, 1);
  const uint64_t read_while_wrong = cache.stats().speculative_reads;
  EXPECT_GT(read_while_wrong, 0u);
  EXPECT_LT(read_while_wrong, 30u);
  EXPECT_EQ(cache.stats().speculative_used, 0u);
  EXPECT_GT(cache.stats().speculation_paused, 0u);
  // Wrong predictions scored while paused lower the average further: it takes a while to recover.
  for (int i = 0; i < 80; ++i) step(2 + i % 6, 2 + i % 6);
  EXPECT_GT(cache.stats().speculative_reads, read_while_wrong) << "right predictions resume reading ahead";
  EXPECT_GT(cache.stats().speculative_used, 0u);
}

TEST(ExpertCache, WithoutSpeculationPredictionsAreIgnored) {
  ThreadPool pool(1);
  SmallCache small(pool, 6, {ExpertPolicy::Frequency, false});
  ExpertCache& cache = small.cache;
  cache.expect(2, std::vector<int32_t>{3, 5});
  cache.use(1, std::vector<int32_t>{1}, true, [](std::span<const ReadyExpert>) {});
  EXPECT_EQ(cache.stats().experts_read, 1u);
  EXPECT_EQ(cache.stats().speculative_reads, 0u);
}

// Decode with and without reading ahead, at a budget that keeps the dense weights (the routers
// the predictions need) and caches a few experts: the same logits, bit for bit, and predictions
// were made and some were right.
TEST(ExpertCache, SpeculationChangesNoResult) {
  ThreadPool pool(2);
  std::vector<std::vector<float>> runs;
  for (bool speculate : {false, true}) {
    HostModelOptions options;
    options.model.context = 32;
    const auto everything = HostModel::load(model_path(), pool, options);
    const uint64_t whole = everything->plan().host_bytes(), minimum = everything->plan().minimum_host_bytes;
    options.host_budget = minimum + (whole - minimum) / 3;
    options.experts.speculate = speculate;
    options.experts.measured = false;  // always, not only while measured faster
    const auto model = HostModel::load(model_path(), pool, options);
    ASSERT_TRUE(model->plan().caches_experts());
    ASSERT_TRUE(model->store().lasting(1, Role::FfnGateInp));
    Forward forward(model->model(), make_cpu_backend(*model, pool));
    std::vector<float> logits(static_cast<size_t>(model->config().vocab));
    std::vector<float> all;
    for (int32_t token : {5, 77, 201, 9, 140, 33, 18, 250, 61, 99}) {
      forward.eval(std::span<const int32_t>(&token, 1), logits.data());
      all.insert(all.end(), logits.begin(), logits.end());
    }
    const ExpertCacheStats stats = model->store().expert_cache()->stats();
    if (speculate) {
      EXPECT_GT(stats.speculative_reads, 0u);
      EXPECT_GT(stats.speculative_used, 0u);
    } else {
      EXPECT_EQ(stats.speculative_reads, 0u);
    }
    runs.push_back(std::move(all));
  }
  ASSERT_EQ(runs[0].size(), runs[1].size());
  EXPECT_EQ(0, std::memcmp(runs[0].data(), runs[1].data(), runs[0].size() * sizeof(float)));
}

// Share of `layers` decode layers the trial read ahead, each taking `with` or `without` seconds.
double share_reading_ahead(ReadAheadTrial& trial, int layers, double with, double without) {
  int ahead = 0;
  for (int i = 0; i < layers; ++i) {
    ahead += trial.reading_ahead();
    trial.layer_passed(trial.reading_ahead() ? with : without);
  }
  return static_cast<double>(ahead) / layers;
}

// Reading ahead is tried both ways at first, then the faster way runs most of the time while the
// other is still tried now and then; when the other becomes faster, the trial follows, and one
// outlying layer does not turn it.
TEST(ExpertCache, ReadAheadTrialKeepsTheFasterSettingAndFollowsAChange) {
  ReadAheadTrial trial;
  EXPECT_TRUE(trial.reading_ahead()) << "nothing measured yet";
  EXPECT_EQ(share_reading_ahead(trial, 48, 1.0, 3e-3), 1.0) << "the first block reads ahead";
  EXPECT_NEAR(share_reading_ahead(trial, 8 * 48, 2e-3, 3e-3), 0.5, 1e-9) << "the trial's blocks go both ways";
  EXPECT_TRUE(trial.prefers_reading_ahead());
  EXPECT_NEAR(trial.seconds_reading_ahead(), 2e-3, 1e-12) << "the slow first block is not counted";
  const double faster_ahead = share_reading_ahead(trial, 64 * 48, 2e-3, 3e-3);
  EXPECT_GE(faster_ahead, 0.8);
  EXPECT_LT(faster_ahead, 0.95) << "the slower setting is still tried";
  EXPECT_NEAR(trial.seconds_reading_ahead(), 2e-3, 1e-9);
  EXPECT_NEAR(trial.seconds_not_reading_ahead(), 3e-3, 1e-9);
  // The disk speeds up: not reading ahead becomes the faster; once explorations have shown it, the
  // trial mostly does not read ahead.
  share_reading_ahead(trial, 64 * 48, 4e-3, 3e-3);
  EXPECT_FALSE(trial.prefers_reading_ahead());
  EXPECT_LE(share_reading_ahead(trial, 64 * 48, 4e-3, 3e-3), 0.2);
  // One layer a thousand times slower (a preempted thread) while not reading ahead: still off.
  while (trial.reading_ahead()) trial.layer_passed(4e-3);
  trial.layer_passed(3.0);
  EXPECT_LE(share_reading_ahead(trial, 32 * 48, 4e-3, 3e-3), 0.2);
}

// A disk whose rate drifts while decode runs (the host caching the file) must not decide the
// trial: reading ahead is 10% faster throughout, yet every layer's time falls steadily during the
// trial and then rises steadily, as much per block as that 10%.
TEST(ExpertCache, ReadAheadTrialIsNotFooledByADriftingDisk) {
  ReadAheadTrial trial;
  auto run = [&](int blocks, double first_layer, double per_layer) {
    int ahead = 0;
    for (int i = 0; i < blocks * 48; ++i) {
      ahead += trial.reading_ahead();
      trial.layer_passed((first_layer + per_layer * i) * (trial.reading_ahead() ? 0.9 : 1.0));
    }
    return static_cast<double>(ahead) / (blocks * 48);
  };
  run(1, 8e-3, 0);  // not counted
  // 8e-3 falling to 2e-3 over the trial: 0.75e-3 less per block, against the 10% reading ahead saves.
  EXPECT_NEAR(run(8, 8e-3, -0.75e-3 / 48), 0.5, 1e-9);
  EXPECT_TRUE(trial.prefers_reading_ahead()) << "the trial's blocks of each setting are centred alike";
  // Rising from 2e-3 by 0.2e-3 a block: each setting's moving average lags its latest layers, the
  // one not running most (it last ran up to eight blocks ago), so by the averages the setting not
  // running would look the faster; each explored block is judged beside its neighbours instead.
  EXPECT_GE(run(64, 2e-3, 0.2e-3 / 48), 0.8);
}

// Noisy layers and blocks (reading ahead 10% faster; each layer's time off by 50% and each block's
// by 10%, both normal) turn the trial seldom: a change needs the last explored blocks together to
// beat the blocks around them, not one lucky block (0.69 of layers reading ahead that way, 0.80 now).
TEST(ExpertCache, ReadAheadTrialIsNotTurnedByNoise) {
  double ahead = 0;
  constexpr int kSeeds = 50, kBlocks = 400;
  for (int seed = 0; seed < kSeeds; ++seed) {
    std::mt19937 rng(static_cast<uint32_t>(seed));
    std::normal_distribution<double> normal;
    ReadAheadTrial trial;
    double block_factor = 1.0;
    for (int i = 0; i < kBlocks * 48; ++i) {
      if (i % 48 == 0) block_factor = std::max(0.2, 1.0 + 0.1 * normal(rng));
      ahead += trial.reading_ahead();
      const double layer_factor = std::max(0.05, 1.0 + 0.5 * normal(rng));
      trial.layer_passed(3e-3 * block_factor * layer_factor * (trial.reading_ahead() ? 0.9 : 1.0));
    }
  }
  EXPECT_GE(ahead / (kSeeds * kBlocks * 48.0), 0.74);
}

// A layer's misses and the next layer's predictions all reach the kernel: a read held back until
// the computing thread next calls the reader leaves the disk idle.
TEST(ExpertCache, TheReaderQueueHoldsALayersMissesAndTheNextLayersPredictions) {
  // One layer of qwen3-30b-a3b's Q4_K_M experts: gate and up slices of 884,736 bytes, down 1,290,240.
  TensorInfo gate{.name = "gate", .file_offset = 1 << 20, .bytes = 128ull * 884736};
  TensorInfo up{.name = "up", .file_offset = gate.file_offset + gate.bytes, .bytes = gate.bytes};
  TensorInfo down{.name = "down", .file_offset = up.file_offset + up.bytes, .bytes = 128ull * 1290240};
  ExpertCachePlan plan;
  plan.experts.count = 128;
  plan.experts.used = 8;
  plan.experts.layers = {{&gate, &up, &down}};
  plan.slots = 16;
  plan.slot_bytes = plan.experts.slot_bytes();
  ReaderOptions io;
  io.queue_depth = 64;
  io.request_bytes = 256 << 10;
  // Each slice split on its own, a partial page at each end: 4 + 4 + 5 requests an expert.
  EXPECT_EQ(expert_reader_options(plan, io).queue_depth, 2 * 8 * 13);
  EXPECT_EQ(expert_reader_options(plan, io).request_bytes, io.request_bytes);
  io.request_bytes = 1 << 20;
  io.queue_depth = 100;
  EXPECT_EQ(expert_reader_options(plan, io).queue_depth, 100) << "a deeper queue asked for is kept";
  io.queue_depth = 4;
  EXPECT_EQ(expert_reader_options(plan, io).queue_depth, 2 * 8 * (1 + 1 + 2));
  plan.experts.used = 128;
  io.request_bytes = 4096;
  EXPECT_EQ(expert_reader_options(plan, io).queue_depth, kMaxQueueDepth);
}

TEST(ExpertCache, PolicyNamesParse) {
  EXPECT_EQ(parse_expert_policy("recency"), ExpertPolicy::Recency);
  EXPECT_EQ(parse_expert_policy("frequency"), ExpertPolicy::Frequency);
  EXPECT_FALSE(parse_expert_policy("lru"));
  EXPECT_STREQ(expert_policy_name(ExpertPolicy::Frequency), "frequency");
}

}  // namespace
}  // namespace fi
