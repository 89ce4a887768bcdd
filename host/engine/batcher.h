#pragma once
// Many generations at once over one engine (the server's core): each request gets one of the
// engine's sequences, a slot with its own KV cache; on every step all active sequences advance in
// one forward pass (each decoding sequence by its last token, prompts by chunks filling the rest of
// the batch), so the weights streamed from disk or over PCIe are read once per step for all of them.
// Requests beyond the slots wait in a bounded queue, first come first served. A slot keeps the
// tokens it holds after its request ends: a later request sharing a prefix with them (the same
// conversation, one turn on) evaluates only what follows it.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "host/engine/engine.h"
#include "host/text/sampler.h"

namespace fi {

struct BatchRequest {
  std::vector<int32_t> prompt;  // not empty
  int64_t max_tokens = 0;       // prompt + max_tokens fit the context
  SamplerParams sampling;
  bool ignore_end_of_generation = false;
};

enum class FinishReason { None, EndOfGeneration, Length, Cancelled, Failed };

// One request's side of the exchange: the batcher appends tokens, the request's thread takes them.
class BatchStream {
 public:
  // Waits up to `wait` for tokens or the end: moves the new tokens into `tokens` (appended) and
  // returns whether the generation has ended.
  bool take(std::vector<int32_t>& tokens, std::chrono::milliseconds wait);
  // The client left or has what it wants (a stop string): the slot is freed at the next step.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

  // Valid once take() has returned true.
  FinishReason finish_reason() const;
  std::string failure() const;                           // FinishReason::Failed: why
  int64_t prompt_tokens() const { return prompt_tokens_; }
  int64_t cached_tokens() const;                         // of the prompt, found in the slot's cache
  int64_t generated_tokens() const;

 private:
  friend class Batcher;
  void push(int32_t token);
  void finish(FinishReason reason, std::string failure = {});
  void set_cached(int64_t tokens);

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<int32_t> ready_;
  int64_t generated_ = 0;
  int64_t cached_ = 0;
  FinishReason reason_ = FinishReason::None;
  std::string failure_;
  int64_t prompt_tokens_ = 0;
  std::atomic<bool> cancelled_{false};
};

struct BatcherOptions {
  size_t max_queue = 64;  // requests waiting for a slot; more are refused
};

struct BatcherStatus {
  int64_t slots = 0, active = 0, queued = 0;
  uint64_t steps = 0;             // forward passes so far
  uint64_t tokens_evaluated = 0;  // through them
};

class Batcher {
 public:
  // Uses every sequence of the engine; starts its thread.
  Batcher(Engine& engine, const BatcherOptions& options);
  ~Batcher();  // cancels what is running and waiting, and joins
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Queues a request; null when the queue is full. Throws Error for a request the engine cannot
  // take (empty prompt, prompt and max_tokens beyond the context, a token outside the vocabulary).
  std::shared_ptr<BatchStream> submit(BatchRequest request);
  BatcherStatus status() const;

 private:
  struct Slot {
    std::vector<int32_t> cached;  // the tokens in this sequence's cache, in order
    std::shared_ptr<BatchStream> stream;
    BatchRequest request;
    std::unique_ptr<Sampler> sampler;
    std::vector<int32_t> history;  // prompt and generated tokens (the penalties' view)
    size_t evaluated = 0;          // of the prompt, in the cache
    int32_t next = -1;             // a sampled token to evaluate at the next step, else -1
    int64_t generated = 0;
  };
  struct Waiting {
    BatchRequest request;
    std::shared_ptr<BatchStream> stream;
  };

  void run();
  // Gives waiting requests free slots (the one sharing the longest prefix with each).
  void admit();
  void step();
  void release(Slot& slot, FinishReason reason, const std::string& failure = {});

  Engine& engine_;
  Forward& forward_;
  const BatcherOptions options_;
  std::vector<Slot> slots_;
  std::vector<float> logits_;

  mutable std::mutex mutex_;  // guards waiting_, stopping_ and the counters
  std::condition_variable work_;
  std::deque<Waiting> waiting_;
  bool stopping_ = false;
  int64_t active_ = 0;
  uint64_t steps_ = 0, tokens_evaluated_ = 0;
  std::thread thread_;
};

}  // namespace fi
