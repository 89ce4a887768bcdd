#include "host/engine.h"

#include <algorithm>

#include "io/error.h"

namespace fi {

namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

Engine::Engine(const EngineOptions& options) : options_(options) {
  const auto start = std::chrono::steady_clock::now();
  if (options.threads < 0 || options.threads > 1024) fail("thread count %d is outside 1..1024", options.threads);
  if (options.context < 0) fail("context length must be positive");
  pool_ = std::make_unique<ThreadPool>(options.threads > 0 ? options.threads : default_thread_count());
  ModelOptions model_options;
  model_options.host_budget = options.host_budget;
  model_options.context = options.context;
  model_options.io = options.io;
  if (options.gpu_budget && options.host_budget)
    fail("--gpu-mem with --host-mem (weights split between GPU, host memory and disk) is not supported yet; give one");
  model_options.load_weights = !options.gpu_budget;
  model_ = LlamaModel::load(options.model_path, *pool_, model_options);
  tokenizer_ = Tokenizer::from_gguf(model_->file());
  if (tokenizer_->size() != config().vocab)
    fail("%s: the tokenizer has %d tokens but the model's vocabulary is %lld", options.model_path.c_str(),
         tokenizer_->size(), static_cast<long long>(config().vocab));
  if (options.gpu_budget) {
    gpu_memory_ = gpu_memory_plan(model_->file(), config(), model_->tied_output(), model_->context(), model_->max_batch());
    forward_ = std::make_unique<LlamaForward>(*model_, make_gpu_compute(*model_, {*options.gpu_budget, options.gpu_device}));
  } else {
    forward_ = std::make_unique<LlamaForward>(*model_, *pool_);
  }
  load_seconds_ = seconds_since(start);
}

GenerationStats Engine::generate(const std::vector<int32_t>& prompt, int64_t max_tokens, Sampler& sampler,
                                 const std::function<void(int32_t)>& on_token, const std::atomic<bool>* stop,
                                 bool ignore_end_of_generation) {
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
    if (stop && stop->load()) {
      stats.interrupted = true;
      break;
    }
    const int32_t token = sampler.sample(logits.data(), static_cast<int32_t>(config().vocab), history);
    if (!ignore_end_of_generation && tokenizer_->is_end_of_generation(token)) {
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
