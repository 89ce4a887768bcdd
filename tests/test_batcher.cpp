// The batcher: requests sharing forward passes get exactly the tokens Engine::generate gives each
// alone; the queue is bounded; a cancelled request frees its slot for a waiting one; a slot's cache
// serves a later request with the same prefix; bad requests are refused before they reach a pass.
#include <thread>

#include "host/engine/batcher.h"
#include "host/engine/host_model.h"
#include "io/error.h"
#include "test_support.h"

namespace fi {
namespace {

using namespace std::chrono_literals;

const ModelShape kShape{64, 2, 4, 2, 96, 512, 0, 10000.0, false};

std::string model_path() { return test::generated_model("batcher_q8_0", kShape, WeightScheme::Q8_0); }

EngineOptions options(int64_t sequences, int64_t context = 96) {
  EngineOptions o{model_path(), 2, context};
  o.sequences = sequences;
  return o;
}

std::vector<int32_t> prompt_of(size_t length, size_t seed) {
  std::vector<int32_t> tokens;
  for (size_t i = 0; i < length; ++i) tokens.push_back(static_cast<int32_t>((i * 31 + seed * 7 + 3) % 250));
  return tokens;
}

// fixed_length: end-of-generation tokens do not end it (tests that count tokens).
BatchRequest request(size_t length, size_t seed, int64_t max_tokens, float temperature, bool fixed_length = false) {
  BatchRequest r;
  r.ignore_end_of_generation = fixed_length;
  r.prompt = prompt_of(length, seed);
  r.max_tokens = max_tokens;
  r.sampling.temperature = temperature;
  r.sampling.seed = seed;
  r.sampling.presence_penalty = 0.3f;
  return r;
}

// Everything the stream gives until it ends (a bounded wait: a stuck batcher fails the test).
std::vector<int32_t> drain(BatchStream& stream) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 600; ++i)
    if (stream.take(tokens, 100ms)) return tokens;
  ADD_FAILURE() << "the generation did not end within a minute";
  return tokens;
}

std::vector<int32_t> alone(Engine& engine, const BatchRequest& r, FinishReason* reason) {
  engine.forward().reset();
  Sampler sampler(r.sampling);
  std::vector<int32_t> tokens;
  const GenerationStats stats = engine.generate(r.prompt, r.max_tokens, sampler, [&](int32_t t) { tokens.push_back(t); });
  *reason = stats.stopped_at_end_of_generation ? FinishReason::EndOfGeneration : FinishReason::Length;
  return tokens;
}

TEST(Batcher, RequestsSharingPassesGetWhatEachGetsAlone) {
  Engine single(options(1));
  std::vector<BatchRequest> requests;
  for (size_t i = 0; i < 7; ++i) requests.push_back(request(3 + i * 5, i, 4 + static_cast<int64_t>(i) * 3, i % 2 ? 0.0f : 0.9f));
  Engine engine(options(3));
  Batcher batcher(engine, {});
  std::vector<std::shared_ptr<BatchStream>> streams;
  for (const BatchRequest& r : requests) streams.push_back(batcher.submit(r));
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(streams[i]);
    const std::vector<int32_t> got = drain(*streams[i]);
    FinishReason reason{};
    EXPECT_EQ(got, alone(single, requests[i], &reason)) << "request " << i;
    EXPECT_EQ(streams[i]->finish_reason(), reason) << "request " << i;
    EXPECT_EQ(streams[i]->generated_tokens(), static_cast<int64_t>(got.size()));
    EXPECT_EQ(streams[i]->prompt_tokens(), static_cast<int64_t>(requests[i].prompt.size()));
  }
  // Decoding sequences shared passes: more tokens than passes, fewer passes than tokens generated.
  const BatcherStatus status = batcher.status();
  EXPECT_GT(status.tokens_evaluated, 2 * status.steps);
  int64_t generated = 0;
  for (const auto& stream : streams) generated += stream->generated_tokens();
  EXPECT_LT(status.steps, generated);
  EXPECT_EQ(status.active, 0);
  EXPECT_EQ(status.queued, 0);
}

// Several sequences' tokens in one pass of a mixture-of-experts model, with the experts read on
// demand into a cache of the smallest budget: the tokens that chose an expert are computed
// together, and each request still gets what it gets alone with every weight resident.
TEST(Batcher, MixtureOfExpertsRequestsSharingPassesUnderABudgetGetWhatEachGetsAlone) {
  const ModelShape shape{.dim = 256, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 512, .context = 512,
                         .rope_base = 1000000.0, .arch = "qwen3moe", .head_dim = 64, .n_experts = 16, .n_experts_used = 4,
                         .expert_ffn_dim = 256, .router_skew = 1.0};
  const std::string path = test::generated_model("batcher_qwen3moe_q4_k_m", shape, WeightScheme::Q4_K_M);
  EngineOptions resident{path, 2, 96};
  Engine single(resident);
  EngineOptions budgeted = resident;
  budgeted.sequences = 3;
  {
    ThreadPool pool(2);
    HostModelOptions placement;
    placement.model = {96, 256, 3};
    budgeted.host_budget = HostModel::load(path, pool, placement)->plan().minimum_host_bytes;
  }
  Engine engine(budgeted);
  ASSERT_TRUE(engine.host_model()->plan().caches_experts());
  std::vector<BatchRequest> requests;
  for (size_t i = 0; i < 5; ++i) requests.push_back(request(4 + i * 6, i + 20, 5 + static_cast<int64_t>(i) * 2, i % 2 ? 0.0f : 0.8f));
  Batcher batcher(engine, {});
  std::vector<std::shared_ptr<BatchStream>> streams;
  for (const BatchRequest& r : requests) streams.push_back(batcher.submit(r));
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(streams[i]);
    FinishReason reason{};
    EXPECT_EQ(drain(*streams[i]), alone(single, requests[i], &reason)) << "request " << i;
  }
  const BatcherStatus status = batcher.status();
  EXPECT_GT(status.tokens_evaluated, 2 * status.steps);
  int64_t generated = 0;
  for (const auto& stream : streams) generated += stream->generated_tokens();
  EXPECT_LT(status.steps, generated) << "the sequences shared passes";
}

TEST(Batcher, TheQueueIsBoundedAndACancelledRequestFreesItsSlot) {
  Engine engine(options(1, 512));
  Batcher batcher(engine, {2});
  const auto first = batcher.submit(request(4, 1, 400, 0.9f, true));
  ASSERT_TRUE(first);
  // The first holds the only slot: two wait, a third is refused.
  std::vector<int32_t> tokens;
  while (tokens.empty()) ASSERT_FALSE(first->take(tokens, 100ms));
  const auto second = batcher.submit(request(4, 2, 3, 0.0f, true));
  const auto third = batcher.submit(request(4, 3, 3, 0.0f, true));
  ASSERT_TRUE(second);
  ASSERT_TRUE(third);
  EXPECT_FALSE(batcher.submit(request(4, 4, 3, 0.0f, true)));
  EXPECT_EQ(batcher.status().queued, 2);
  // A waiting request cancelled gives up its place in the queue.
  third->cancel();
  const auto fourth = batcher.submit(request(4, 5, 3, 0.0f, true));
  ASSERT_TRUE(fourth);
  first->cancel();
  drain(*first);
  EXPECT_EQ(first->finish_reason(), FinishReason::Cancelled);
  EXPECT_LT(first->generated_tokens(), 400);
  EXPECT_EQ(drain(*second).size(), 3u);
  EXPECT_EQ(second->finish_reason(), FinishReason::Length);
  drain(*third);
  EXPECT_EQ(third->finish_reason(), FinishReason::Cancelled);
  EXPECT_EQ(drain(*fourth).size(), 3u);
}

TEST(Batcher, ASlotsCacheServesALaterRequestWithTheSamePrefix) {
  Engine single(options(1));
  Engine engine(options(2));
  Batcher batcher(engine, {});
  BatchRequest first = request(20, 1, 5, 0.0f);
  const auto a = batcher.submit(first);
  const std::vector<int32_t> reply = drain(*a);
  // The next turn: the same prompt, the reply, then more.
  BatchRequest next = request(30, 2, 6, 0.7f);
  std::vector<int32_t> prompt = first.prompt;
  prompt.insert(prompt.end(), reply.begin(), reply.end());
  prompt.insert(prompt.end(), next.prompt.begin(), next.prompt.end());
  next.prompt = prompt;
  const auto b = batcher.submit(next);
  const std::vector<int32_t> got = drain(*b);
  // The reply's last token was sampled, never evaluated: everything before it came from the cache.
  EXPECT_EQ(b->cached_tokens(), static_cast<int64_t>(first.prompt.size() + reply.size() - 1));
  FinishReason reason{};
  EXPECT_EQ(got, alone(single, next, &reason));
}

TEST(Batcher, BadRequestsAreRefusedBeforeAnyPass) {
  Engine engine(options(2, 32));
  Batcher batcher(engine, {});
  EXPECT_THROW(batcher.submit(request(0, 1, 4, 0.0f)), Error);
  EXPECT_THROW(batcher.submit(request(30, 1, 4, 0.0f)), Error) << "beyond the context";
  BatchRequest outside = request(4, 1, 4, 0.0f);
  outside.prompt[2] = 100000;
  EXPECT_THROW(batcher.submit(outside), Error);
  outside.prompt[2] = -1;
  EXPECT_THROW(batcher.submit(outside), Error);
  // None of them disturbed the others.
  const auto fine = batcher.submit(request(4, 1, 4, 0.0f, true));
  EXPECT_EQ(drain(*fine).size(), 4u);
  const auto nothing = batcher.submit(request(4, 1, 0, 0.0f));
  EXPECT_TRUE(drain(*nothing).empty());
  EXPECT_EQ(nothing->finish_reason(), FinishReason::Length);
}

TEST(Batcher, StoppingCancelsWhatRunsAndWaits) {
  Engine engine(options(1, 512));
  std::shared_ptr<BatchStream> running, waiting;
  {
    Batcher batcher(engine, {});
    running = batcher.submit(request(4, 1, 500, 0.9f, true));
    waiting = batcher.submit(request(4, 2, 5, 0.9f));
    std::vector<int32_t> tokens;
    while (tokens.empty()) ASSERT_FALSE(running->take(tokens, 100ms));
  }
  EXPECT_EQ(running->finish_reason(), FinishReason::Cancelled);
  EXPECT_EQ(waiting->finish_reason(), FinishReason::Cancelled);
}

}  // namespace
}  // namespace fi
