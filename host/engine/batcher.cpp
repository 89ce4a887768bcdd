#include "host/engine/batcher.h"

#include <algorithm>

#include "io/error.h"
#include "io/log.h"

namespace fi {

bool BatchStream::take(std::vector<int32_t>& tokens, std::chrono::milliseconds wait) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, wait, [&] { return !ready_.empty() || reason_ != FinishReason::None; });
  tokens.insert(tokens.end(), ready_.begin(), ready_.end());
  ready_.clear();
  return reason_ != FinishReason::None;
}

FinishReason BatchStream::finish_reason() const {
  std::lock_guard lock(mutex_);
  return reason_;
}

std::string BatchStream::failure() const {
  std::lock_guard lock(mutex_);
  return failure_;
}

int64_t BatchStream::cached_tokens() const {
  std::lock_guard lock(mutex_);
  return cached_;
}

int64_t BatchStream::generated_tokens() const {
  std::lock_guard lock(mutex_);
  return generated_;
}

void BatchStream::push(int32_t token) {
  {
    std::lock_guard lock(mutex_);
    ready_.push_back(token);
    ++generated_;
  }
  changed_.notify_all();
}

void BatchStream::finish(FinishReason reason, std::string failure) {
  {
    std::lock_guard lock(mutex_);
    if (reason_ != FinishReason::None) return;
    reason_ = reason;
    failure_ = std::move(failure);
  }
  changed_.notify_all();
}

void BatchStream::set_cached(int64_t tokens) {
  std::lock_guard lock(mutex_);
  cached_ = tokens;
}

namespace {

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const size_t limit = std::min(a.size(), b.size());
  size_t n = 0;
  while (n < limit && a[n] == b[n]) ++n;
  return n;
}

}  // namespace

Batcher::Batcher(Engine& engine, const BatcherOptions& options)
    : engine_(engine), forward_(engine.forward()), options_(options),
      slots_(static_cast<size_t>(engine.forward().sequences())),
      logits_(static_cast<size_t>(engine.forward().sequences() * engine.config().vocab)) {
  if (forward_.max_batch() < forward_.sequences())
    fail("internal: a batch of %lld tokens cannot hold a step of %lld sequences", static_cast<long long>(forward_.max_batch()),
         static_cast<long long>(forward_.sequences()));
  thread_ = std::thread([this] { run(); });
}

Batcher::~Batcher() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_.notify_all();
  thread_.join();
  for (Slot& slot : slots_)
    if (slot.stream) slot.stream->finish(FinishReason::Cancelled);
  for (Waiting& waiting : waiting_) waiting.stream->finish(FinishReason::Cancelled);
}

std::shared_ptr<BatchStream> Batcher::submit(BatchRequest request) {
  if (request.prompt.empty()) fail("the prompt is empty");
  if (request.max_tokens < 0) fail("max_tokens is negative");
  const int64_t context = forward_.context();
  if (static_cast<int64_t>(request.prompt.size()) + request.max_tokens > context)
    fail("the prompt (%zu tokens) and max_tokens (%lld) exceed the context of %lld tokens", request.prompt.size(),
         static_cast<long long>(request.max_tokens), static_cast<long long>(context));
  const int64_t vocab = engine_.config().vocab;
  for (int32_t token : request.prompt)
    if (token < 0 || token >= vocab) fail("token id %d is outside the vocabulary (0..%lld)", token, static_cast<long long>(vocab - 1));
  auto stream = std::make_shared<BatchStream>();
  stream->prompt_tokens_ = static_cast<int64_t>(request.prompt.size());
  if (request.max_tokens == 0) {
    stream->finish(FinishReason::Length);
    return stream;
  }
  {
    std::lock_guard lock(mutex_);
    if (waiting_.size() >= options_.max_queue)
      std::erase_if(waiting_, [](const Waiting& w) {
        if (!w.stream->cancelled()) return false;
        w.stream->finish(FinishReason::Cancelled);
        return true;
      });
    if (waiting_.size() >= options_.max_queue) return nullptr;
    waiting_.push_back({std::move(request), stream});
  }
  work_.notify_all();
  return stream;
}

BatcherStatus Batcher::status() const {
  std::lock_guard lock(mutex_);
  return {static_cast<int64_t>(slots_.size()), active_, static_cast<int64_t>(waiting_.size()), steps_, tokens_evaluated_};
}

void Batcher::run() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      work_.wait(lock, [&] { return stopping_ || !waiting_.empty() || active_ > 0; });
      if (stopping_) return;
    }
    admit();
    step();
  }
}

void Batcher::admit() {
  std::lock_guard lock(mutex_);
  while (!waiting_.empty()) {
    Waiting& next = waiting_.front();
    if (next.stream->cancelled()) {
      next.stream->finish(FinishReason::Cancelled);
      waiting_.pop_front();
      continue;
    }
    Slot* best = nullptr;
    size_t best_shared = 0;
    for (Slot& slot : slots_) {
      if (slot.stream) continue;
      const size_t shared = common_prefix(slot.cached, next.request.prompt);
      if (!best || shared > best_shared) {
        best = &slot;
        best_shared = shared;
      }
    }
    if (!best) return;
    // At least the prompt's last token is evaluated: its logits start the reply.
    const size_t reused = std::min(best_shared, next.request.prompt.size() - 1);
    const auto sequence = static_cast<int64_t>(best - slots_.data());
    forward_.rewind(static_cast<int64_t>(reused), sequence);
    best->cached.resize(reused);
    best->request = std::move(next.request);
    best->stream = std::move(next.stream);
    best->sampler = std::make_unique<Sampler>(best->request.sampling);
    best->history = best->request.prompt;
    best->evaluated = reused;
    best->next = -1;
    best->generated = 0;
    best->stream->set_cached(static_cast<int64_t>(reused));
    ++active_;
    waiting_.pop_front();
  }
}

void Batcher::release(Slot& slot, FinishReason reason, const std::string& failure) {
  // The count drops before the stream ends: whoever sees the end sees the slot free.
  {
    std::lock_guard lock(mutex_);
    --active_;
  }
  slot.stream->finish(reason, failure);
  slot.stream.reset();
  slot.sampler.reset();
  slot.history.clear();
  slot.next = -1;
}

void Batcher::step() {
  for (Slot& slot : slots_)
    if (slot.stream && slot.stream->cancelled()) release(slot, FinishReason::Cancelled);

  // Every decoding sequence's token first; prompts fill the rest of the batch in slot order.
  std::vector<SequenceChunk> chunks;
  int64_t budget = forward_.max_batch();
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& slot = slots_[i];
    if (!slot.stream || slot.next < 0) continue;
    chunks.push_back({static_cast<int64_t>(i), std::span<const int32_t>(&slot.next, 1), true});
    --budget;
  }
  for (size_t i = 0; i < slots_.size() && budget > 0; ++i) {
    Slot& slot = slots_[i];
    if (!slot.stream || slot.next >= 0) continue;
    const std::vector<int32_t>& prompt = slot.request.prompt;
    const auto count = static_cast<size_t>(std::min<int64_t>(budget, static_cast<int64_t>(prompt.size() - slot.evaluated)));
    const bool last = slot.evaluated + count == prompt.size();
    chunks.push_back({static_cast<int64_t>(i), std::span<const int32_t>(prompt).subspan(slot.evaluated, count), last});
    budget -= static_cast<int64_t>(count);
  }
  if (chunks.empty()) return;

  try {
    forward_.eval_together(chunks, logits_.data());
  } catch (const std::exception& error) {
    // The pass did not advance any sequence; the ones in it end with the reason, the others go on.
    log_warning("a forward pass failed: %s", error.what());
    for (const SequenceChunk& chunk : chunks) {
      Slot& slot = slots_[static_cast<size_t>(chunk.sequence)];
      if (slot.stream) release(slot, FinishReason::Failed, error.what());
    }
    return;
  }
  {
    std::lock_guard lock(mutex_);
    ++steps_;
    for (const SequenceChunk& chunk : chunks) tokens_evaluated_ += chunk.tokens.size();
  }

  const auto vocab = static_cast<int32_t>(engine_.config().vocab);
  size_t row = 0;
  for (const SequenceChunk& chunk : chunks) {
    Slot& slot = slots_[static_cast<size_t>(chunk.sequence)];
    slot.cached.insert(slot.cached.end(), chunk.tokens.begin(), chunk.tokens.end());
    if (slot.next < 0) slot.evaluated += chunk.tokens.size();
    if (!chunk.logits) continue;
    float* logits = logits_.data() + row++ * static_cast<size_t>(vocab);
    slot.next = -1;
    const int32_t token = slot.sampler->sample(logits, vocab, slot.history);
    if (!slot.request.ignore_end_of_generation && engine_.tokenizer().is_end_of_generation(token)) {
      release(slot, FinishReason::EndOfGeneration);
      continue;
    }
    slot.stream->push(token);
    slot.history.push_back(token);
    if (++slot.generated >= slot.request.max_tokens) {
      release(slot, FinishReason::Length);
      continue;
    }
    slot.next = token;
  }
}

}  // namespace fi
