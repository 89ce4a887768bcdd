#include "host/engine/engine.h"

#include <unistd.h>

#include <algorithm>

#include "host/cpu/cpu_backend.h"
#include "host/engine/placement.h"
#include "io/error.h"
#include "planner/budget.h"
#include "planner/profile.h"

namespace fi {

namespace {

// The profile a tier plan is made with: this machine's, when probe measured its GPU; otherwise
// nominal figures, which 'flexinfer probe' replaces with measurements.
Profile default_tier_profile() {
  try {
    if (const auto cached = cached_profile(); cached && cached->has_gpu() && cached->disk_read_GBps > 0 &&
                                                cached->host_read_GBps > 0)
      return *cached;
  } catch (const Error&) {
    // A damaged cache is reported by the commands that read it for speeds; nominal figures do here.
  }
  return nominal_profile();
}

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
  model_options.context = options.context;
  if (options.gpu_budget) {
    model_ = Model::open(options.model_path, model_options);
  } else {
    host_model_ = HostModel::load(options.model_path, *pool_, {model_options, options.host_budget, options.io});
  }
  const Model& opened = model();
  tokenizer_ = Tokenizer::from_gguf(opened.file());
  if (tokenizer_->size() != config().vocab)
    fail("%s: the tokenizer has %d tokens but the model's vocabulary is %lld", options.model_path.c_str(),
         tokenizer_->size(), static_cast<long long>(config().vocab));
  if (options.gpu_budget) {
    require_gpu(options.gpu_device);
    gpu_memory_ = gpu_memory_plan(opened);
    // What does not fit the GPU budget (or the host budget, when one is given) is split over VRAM,
    // pinned host memory and disk, and the planner may decode the last layers on the CPU.
    if (options.host_budget || gpu_memory_.total() > *options.gpu_budget) {
      const TierInput input = tier_input(opened, options.host_budget, pool_->size(), *options.gpu_budget);
      tier_profile_ = options.profile ? *options.profile : default_tier_profile();
      tiers_ = make_tier_plan(input, *tier_profile_);
      // Without --host-mem the host tier holds everything VRAM does not, pinned: refuse what the
      // machine could never lock rather than fail deep inside the driver.
      const uint64_t ram = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
      if (!options.host_budget && tiers_->host_used() > ram)
        fail("what does not fit --gpu-mem %s needs %s of pinned host memory, more than this machine's %s of RAM: give "
             "--host-mem to read the rest from disk",
             format_bytes(*options.gpu_budget).c_str(), format_bytes(tiers_->host_used()).c_str(), format_bytes(ram).c_str());
      tier_store_ = std::make_unique<TierStore>(opened, *tiers_, options.gpu_device, options.io);
    }
    std::vector<std::unique_ptr<Backend>> devices;
    devices.push_back(make_gpu_backend(opened, {*options.gpu_budget, options.gpu_device, tier_store_.get()}));
    const auto layers = static_cast<size_t>(config().n_layers);
    DevicePlacement placement = DevicePlacement::single(config().n_layers);
    if (tier_store_ && tier_store_->first_cpu_layer() < config().n_layers) {
      cpu_scratch_ = std::make_unique<HostArena>(
          CpuBackend::scratch_bytes(config(), opened.context(), opened.max_batch(), pool_->size()),
          options.host_budget.has_value());
      devices.push_back(std::make_unique<CpuBackend>(opened, *tier_store_, *pool_, tier_store_->kv_cache(), *cpu_scratch_));
      for (auto l = static_cast<size_t>(tier_store_->first_cpu_layer()); l < layers; ++l) placement.decode[l] = 1;
    }
    forward_ = std::make_unique<Forward>(opened, std::move(devices), std::move(placement));
  } else {
    forward_ = std::make_unique<Forward>(host_model_->model(), make_cpu_backend(*host_model_, *pool_));
  }
  if (options.trace) {
    trace_ = std::make_unique<Trace>();
    forward_->set_trace(trace_.get());
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
