#include "host/engine.h"

#include <unistd.h>

#include <algorithm>

#include "io/error.h"

namespace fi {

namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

Engine::Engine(const EngineOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  if (options.threads < 0 || options.threads > 1024) fail("thread count %d is outside 1..1024", options.threads);
  if (options.context < 0) fail("context length must be positive");
  model_ = LlamaModel::load(options.model_path);
  tokenizer_ = Tokenizer::from_gguf(model_->file());
  if (tokenizer_->size() != config().vocab)
    fail("%s: the tokenizer has %d tokens but the model's vocabulary is %lld", options.model_path.c_str(),
         tokenizer_->size(), static_cast<long long>(config().vocab));
  const int64_t context = options.context > 0 ? options.context : std::min<int64_t>(4096, config().trained_context);
  // The KV cache is reserved lazily; still refuse one the machine could never hold.
  const double kv_bytes = 2.0 * sizeof(uint16_t) * static_cast<double>(config().n_layers) *
                          static_cast<double>(context) * static_cast<double>(config().kv_dim());
  const double ram_bytes = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  if (kv_bytes > ram_bytes)
    fail("a context of %lld tokens needs a %.1f GiB KV cache, more than this machine's %.1f GiB of RAM (lower --ctx)",
         static_cast<long long>(context), kv_bytes / (1 << 30), ram_bytes / (1 << 30));
  pool_ = std::make_unique<ThreadPool>(options.threads > 0 ? options.threads : default_thread_count());
  forward_ = std::make_unique<LlamaForward>(config(), model_->weights(), *pool_, context);
  load_seconds_ = seconds_since(start);
}

GenerationStats Engine::generate(const std::vector<int32_t>& prompt, int64_t max_tokens, Sampler& sampler,
                                 const std::function<void(int32_t)>& on_token) {
  GenerationStats stats;
  if (prompt.empty()) fail("the prompt is empty and the model has no BOS token to start from");
  if (static_cast<int64_t>(prompt.size()) + max_tokens > forward_->context())
    fail("prompt (%zu tokens) + %lld generated tokens exceed the context of %lld (raise --ctx)", prompt.size(),
         static_cast<long long>(max_tokens), static_cast<long long>(forward_->context()));
  std::vector<float> logits(static_cast<size_t>(config().vocab));
  std::vector<int32_t> history = prompt;

  auto start = std::chrono::steady_clock::now();
  forward_->eval(prompt, logits.data());
  stats.prompt_tokens = static_cast<int64_t>(prompt.size());
  stats.prompt_seconds = seconds_since(start);

  start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < max_tokens; ++i) {
    const int32_t token = sampler.sample(logits.data(), static_cast<int32_t>(config().vocab), history);
    if (tokenizer_->is_end_of_generation(token)) {
      stats.stopped_at_end_of_generation = true;
      break;
    }
    on_token(token);
    history.push_back(token);
    ++stats.generated_tokens;
    if (i + 1 < max_tokens) forward_->eval(std::span<const int32_t>(&token, 1), logits.data());
  }
  stats.generation_seconds = seconds_since(start);
  return stats;
}

}  // namespace fi
