#include "host/engine/engine.h"

#include <unistd.h>

#include <algorithm>

#include "host/cpu/cpu_backend.h"
#include "host/engine/placement.h"
#include "host/engine/system_memory.h"
#include "cuda/device_info.h"
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

namespace {

// The smallest context the engine shortens a default one to.
constexpr int64_t kMinimumAutoContext = 256;

// Host memory a CPU run of `model` needs with every weight loaded (no budget), and at least
// (the plan's minimum working set).
struct HostNeeds {
  uint64_t unlimited = 0, minimum = 0;
};
HostNeeds host_needs(const Model& model, int threads, HostPart part = HostPart::Whole) {
  const Plan plan = make_plan(host_plan_input(model, std::nullopt, threads, part));
  return {plan.host_bytes(), plan.minimum_host_bytes};
}

// --host-mem when the user left it to the engine: none when every weight fits what is available,
// else what is available; `chosen` says which and why.
std::optional<uint64_t> automatic_host_budget(const Model& model, int threads, HostPart part, std::string& chosen) {
  const AvailableMemory available = available_host_memory(read_memory_limits());
  const HostNeeds needs = host_needs(model, threads, part);
  const char* what = part == HostPart::Whole ? "every weight" : "every expert";
  if (needs.unlimited <= available.bytes) {
    chosen = std::string(what) + " in RAM: the run needs " + format_bytes(needs.unlimited) + " of the " +
             format_bytes(available.bytes) + " available (" + available.why + ")";
    return std::nullopt;
  }
  chosen = "streaming within --host-mem " + format_bytes(available.bytes) + " (" + available.why + "): the run needs " +
           format_bytes(needs.unlimited) + " with " + what + " in RAM";
  return available.bytes;
}

std::string tokens(int64_t count) { return std::to_string(count) + " tokens"; }

}  // namespace

Engine::Engine(const EngineOptions& options) : options_(options) {
  const auto start = std::chrono::steady_clock::now();
  if (options.threads < 0 || options.threads > 1024) fail("thread count %d is outside 1..1024", options.threads);
  if (options.context < 0) fail("context length must be positive");
  // Before the load: a trace that cannot be written fails at once, not after it.
  if (!options.trace.empty()) trace_ = std::make_unique<Trace>(options.trace);
  pool_ = std::make_unique<ThreadPool>(options.threads > 0 ? options.threads : default_thread_count());
  ModelOptions model_options;
  model_options.context = options.context;
  model_options.sequences = options.sequences;
  std::unique_ptr<Model> opened = Model::open(options.model_path, model_options);
  tokenizer_ = Tokenizer::from_gguf(opened->file());
  if (tokenizer_->size() != opened->config().vocab)
    fail("%s: the tokenizer has %d tokens but the model's vocabulary is %lld", options.model_path.c_str(),
         tokenizer_->size(), static_cast<long long>(opened->config().vocab));

  bool automatic_gpu_budget = false;
  if (!options_.gpu_budget && options.auto_gpu_budget) {
    std::string why;
    const std::vector<cuda::DeviceInfo> devices = cuda::list_devices(&why);
    if (!devices.empty() && options.gpu_device >= 0 && options.gpu_device < static_cast<int>(devices.size())) {
      const cuda::DeviceInfo& device = devices[static_cast<size_t>(options.gpu_device)];
      // Room for allocations outside the arena (cuBLAS handles, the driver's own).
      options_.gpu_budget = std::min(device.free_bytes / 10 * 9, gpu_arena_room(options.gpu_device));
      automatic_gpu_budget = true;
      placement_.push_back("on " + device.name + ": --gpu-mem " + format_bytes(*options_.gpu_budget) +
                           " (90% of its free memory, less room for CUDA and cuBLAS where that is more)");
    }
  }

  // A mixture-of-experts model whose attention, embedding and head do not fit the memory an
  // automatic choice found stays on the CPU (a given budget says so in one line instead).
  if (automatic_gpu_budget && opened->config().has_experts() &&
      gpu_memory_plan(*opened, GpuExperts::OnCpu).total() > *options_.gpu_budget) {
    placement_.back() += ": too little for this model's attention and KV cache, which stay on the CPU";
    options_.gpu_budget.reset();
  }
  if (options_.gpu_budget) {
    open_on_gpu(std::move(opened));
  } else {
    open_on_cpu(std::move(opened));
  }
  if (trace_) forward_->set_trace(trace_.get());
  load_seconds_ = seconds_since(start);
}

void Engine::open_on_cpu(std::unique_ptr<Model> model) {
  const int threads = pool_->size();
  std::optional<uint64_t> budget = options_.host_budget;
  std::string chosen;
  if (!budget && options_.auto_host_budget) budget = automatic_host_budget(*model, threads, HostPart::Whole, chosen);
  // A default context shortens until its KV cache fits the budget; a given one is the user's.
  if (budget && options_.context == 0) {
    const int64_t wanted = model->context();
    while (model->context() > kMinimumAutoContext && host_needs(*model, threads).minimum > *budget)
      model->set_context(std::max(kMinimumAutoContext, model->context() / 2));
    if (model->context() != wanted)
      placement_.push_back("context shortened to " + tokens(model->context()) + ": a KV cache of " + tokens(wanted) +
                           (model->sequences() > 1 ? " for each of " + std::to_string(model->sequences()) + " sequences" : "") +
                           " does not fit --host-mem " + format_bytes(*budget) + " (--ctx sets it)");
  }
  if (!chosen.empty()) placement_.insert(placement_.begin(), chosen);
  host_model_ = HostModel::load(std::move(model), *pool_, budget, options_.io, options_.experts);
  forward_ = std::make_unique<Forward>(host_model_->model(), make_cpu_backend(*host_model_, *pool_));
  const Plan& plan = host_model_->plan();
  if (plan.streams())
    placement_.push_back(format_bytes(plan.resident_bytes()) + " of " + format_bytes(plan.weight_bytes()) +
                         " weights resident, " + format_bytes(plan.read_bytes_per_token()) + " streamed per token (" +
                         host_model_->store().reader().describe() + ")");
  describe_expert_cache();
}

void Engine::describe_expert_cache() {
  const Plan& plan = host_model_->plan();
  if (plan.caches_experts()) {
    const ExpertCachePlan& cache = plan.expert_cache;
    const int64_t all = static_cast<int64_t>(cache.experts.layers.size()) * cache.experts.count;
    placement_.push_back(strprintf("experts read on demand: a cache of %lld of the %lld experts (%s, %s policy) fed by "
                                   "what the router chooses; the rest of the budget holds the dense weights",
                                   static_cast<long long>(cache.slots), static_cast<long long>(all),
                                   format_bytes(cache.bytes()).c_str(), expert_policy_name(options_.experts.policy)));
  }
}

// A mixture-of-experts model with a GPU too small for it: the GPU computes the dense half of every
// layer (attention, the embedding, the head) with the KV cache in VRAM; each layer's expert half
// (norm, router, the experts) computes on the CPU where the experts live: in host memory, all of
// them or a cache of them fed from disk by what the router chooses. Decode multiplies a few experts per layer
// once: reading them where they are beats shipping them over PCIe. The residual stream crosses
// twice per layer (dim floats per token).
void Engine::open_experts_beside_gpu(std::unique_ptr<Model> model, uint64_t gpu_budget) {
  const int threads = pool_->size();
  gpu_memory_ = gpu_memory_plan(*model, GpuExperts::OnCpu);
  // Before the experts load: a budget too small for the GPU's half is refused at once.
  if (gpu_memory_.total() > gpu_budget)
    fail("--gpu-mem %s is below the %s this model's attention, embedding and head need on the GPU (%s); a smaller "
         "--ctx shrinks the KV cache",
         format_bytes(gpu_budget).c_str(), format_bytes(gpu_memory_.total()).c_str(), gpu_memory_.describe().c_str());
  std::optional<uint64_t> budget = options_.host_budget;
  std::string chosen;
  if (!budget && options_.auto_host_budget) budget = automatic_host_budget(*model, threads, HostPart::ExpertHalves, chosen);
  if (!chosen.empty()) placement_.push_back(chosen);
  host_model_ = HostModel::load(std::move(model), *pool_, budget, options_.io, options_.experts, HostPart::ExpertHalves);
  const Plan& plan = host_model_->plan();
  // Only experts are planned matrices here: they are resident or cached, never on the streamed
  // schedule, whose head unit the CPU never computes.
  if (plan.streams()) fail("internal: the expert halves' plan streams");
  const Model& opened = host_model_->model();
  // VRAM beyond the dense half caches experts; the cost model weighs uploads with the machine's rates.
  // (Within the device's room as it is after the load, which may have taken minutes.)
  const uint64_t vram = std::min(gpu_budget, gpu_arena_room(options_.gpu_device));
  gpu_expert_cache_plan_ = fi::gpu_expert_cache_plan(opened, vram > gpu_memory_.total() ? vram - gpu_memory_.total() : 0);
  const Profile rates = options_.profile ? *options_.profile : default_tier_profile();
  GpuOptions gpu_options{gpu_budget, options_.gpu_device, nullptr, GpuExperts::OnCpu, gpu_expert_cache_plan_};
  for (int64_t l = 0; l < opened.config().n_layers; ++l)
    if (const TensorInfo* experts = opened.tensors().layer(l, Role::FfnGateExps)) {
      gpu_options.cpu_matvec_GBps = rates.cpu_matvec_GBps_for(experts->type);
      break;
    }
  gpu_options.h2d_GBps = rates.h2d_pinned_GBps;
  gpu_options.host_copy_GBps = rates.host_read_GBps;
  gpu_options.pool = pool_.get();
  std::vector<std::unique_ptr<Backend>> devices;
  devices.push_back(make_gpu_backend(opened, gpu_options));
  std::unique_ptr<CpuBackend> cpu = make_cpu_backend(*host_model_, *pool_);
  gpu_expert_cache_ = devices.front()->expert_assist();
  cpu->set_expert_assist(gpu_expert_cache_);
  devices.push_back(std::move(cpu));
  DevicePlacement placement = DevicePlacement::single(opened.config().n_layers);
  placement.expert_half.assign(static_cast<size_t>(opened.config().n_layers), 1);
  forward_ = std::make_unique<Forward>(opened, std::move(devices), std::move(placement));
  placement_.push_back("attention, embedding and head on the GPU (" + format_bytes(gpu_memory_.total()) + " of " +
                       format_bytes(gpu_budget) + " budget); each layer's experts on the CPU, where they live (" +
                       format_bytes(plan.host_bytes()) + " of host memory)");
  if (gpu_expert_cache_)
    placement_.push_back(strprintf(
        "a cache of %lld experts in VRAM (%s) fed by what the router chooses; an expert in host memory uploads when "
        "that beats computing it on the CPU (prefill, %s/s over the bus vs %s/s on the CPU)",
        static_cast<long long>(gpu_expert_cache_plan_.slots), format_bytes(gpu_expert_cache_plan_.total()).c_str(),
        format_bytes(static_cast<uint64_t>(gpu_options.h2d_GBps * 1e9)).c_str(),
        format_bytes(static_cast<uint64_t>(gpu_options.cpu_matvec_GBps * 1e9)).c_str()));
  describe_expert_cache();
}

void Engine::open_on_gpu(std::unique_ptr<Model> model) {
  require_gpu(options_.gpu_device);
  // Within the device's room: a budget above it still runs, with more of the model in the other tiers.
  const uint64_t room = gpu_arena_room(options_.gpu_device);
  if (room >= *options_.gpu_budget) return open_on_gpu_within(std::move(model), *options_.gpu_budget);
  const std::string held = strprintf("--gpu-mem %s is held to %s, the room on CUDA device %d (%s)",
                                     format_bytes(*options_.gpu_budget).c_str(), format_bytes(room).c_str(),
                                     options_.gpu_device, kGpuRoomMeaning);
  placement_.push_back(held);
  try {
    open_on_gpu_within(std::move(model), room);
  } catch (const Error& error) {
    fail("%s; %s", error.what(), held.c_str());
  }
}

void Engine::open_on_gpu_within(std::unique_ptr<Model> model, uint64_t gpu_budget) {
  gpu_budget_ = gpu_budget;
  // Every expert in VRAM when the whole model fits, else the experts stay on the CPU.
  if (model->config().has_experts() && gpu_memory_plan(*model).total() > gpu_budget)
    return open_experts_beside_gpu(std::move(model), gpu_budget);
  const Model& opened = *model;
  model_ = std::move(model);
  gpu_memory_ = gpu_memory_plan(opened);
  // What does not fit the GPU budget (or the host budget, when one is given) is split over VRAM,
  // pinned host memory and disk, and the planner may decode the last layers on the CPU.
  std::optional<uint64_t> host_budget = options_.host_budget;
  // A mixture-of-experts model here fits whole: --host-mem has nothing to hold.
  if (opened.config().has_experts()) {
    if (host_budget) placement_.push_back("--host-mem is not needed: every weight, every expert included, is in VRAM");
  } else if (host_budget || gpu_memory_.total() > gpu_budget) {
    tier_profile_ = options_.profile ? *options_.profile : default_tier_profile();
    tiers_ = make_tier_plan(tier_input(opened, host_budget, pool_->size(), gpu_budget), *tier_profile_);
    // Without --host-mem the host tier holds everything VRAM does not, pinned: when that is more
    // than the machine can hold, the rest is read from disk within what is available (auto), or
    // the run is refused rather than fail deep inside the driver.
    const AvailableMemory available = available_host_memory(read_memory_limits());
    if (!host_budget && options_.auto_host_budget && tiers_->host_used() > available.bytes) {
      host_budget = available.bytes;
      tiers_ = make_tier_plan(tier_input(opened, host_budget, pool_->size(), gpu_budget), *tier_profile_);
      placement_.push_back("--host-mem " + format_bytes(available.bytes) + " (" + available.why +
                           "): the rest of the weights are read from disk");
    }
    const uint64_t ram = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
    if (!host_budget && tiers_->host_used() > ram)
      fail("what does not fit --gpu-mem %s needs %s of pinned host memory, more than this machine's %s of RAM: give "
           "--host-mem to read the rest from disk",
           format_bytes(gpu_budget).c_str(), format_bytes(tiers_->host_used()).c_str(), format_bytes(ram).c_str());
    tier_store_ = std::make_unique<TierStore>(opened, *tiers_, options_.gpu_device, options_.io);
  }
  std::vector<std::unique_ptr<Backend>> devices;
  devices.push_back(make_gpu_backend(opened, {gpu_budget, options_.gpu_device, tier_store_.get()}));
  const auto layers = static_cast<size_t>(opened.config().n_layers);
  DevicePlacement placement = DevicePlacement::single(opened.config().n_layers);
  if (tier_store_ && tier_store_->first_cpu_layer() < opened.config().n_layers) {
    cpu_scratch_ = std::make_unique<HostArena>(
        CpuBackend::scratch_bytes(opened.config(), opened.context(), opened.max_batch(), pool_->size()),
        host_budget.has_value());
    devices.push_back(std::make_unique<CpuBackend>(opened, *tier_store_, *pool_, tier_store_->kv_cache(), *cpu_scratch_));
    for (auto l = static_cast<size_t>(tier_store_->first_cpu_layer()); l < layers; ++l) placement.decode[l] = 1;
  }
  forward_ = std::make_unique<Forward>(opened, std::move(devices), std::move(placement));
  describe_gpu_placement(gpu_budget);
}

void Engine::describe_gpu_placement(uint64_t gpu_budget) {
  if (!tiers_) {
    placement_.push_back("every layer on the GPU: " + format_bytes(gpu_memory_.total()) + " of " +
                         format_bytes(gpu_budget) + " budget on the device");
    return;
  }
  const int64_t n_layers = config().n_layers;
  uint64_t vram_weights = 0;
  for (const TierUnit& unit : tiers_->units) vram_weights += unit.gpu_bytes();
  const int cpu_layers = tiers_->cpu_layers();
  const std::string devices =
      cpu_layers == 0 ? std::string("every layer on the GPU")
                      : strprintf("layers 0-%lld on the GPU, %lld-%lld decoded on the CPU (prefilled on the GPU)",
                                  static_cast<long long>(n_layers - cpu_layers - 1),
                                  static_cast<long long>(n_layers - cpu_layers), static_cast<long long>(n_layers - 1));
  placement_.push_back(strprintf(
      "%s; weights split: %s in VRAM, %s in pinned host memory, %s read from disk per token (%s of %s GPU budget, %s "
      "host memory); planned %.1f tok/s, bound by %s",
      devices.c_str(), format_bytes(vram_weights).c_str(), format_bytes(tiers_->host_weight_bytes).c_str(),
      format_bytes(tiers_->disk_bytes_per_token()).c_str(), format_bytes(tiers_->gpu_used()).c_str(),
      format_bytes(tiers_->gpu_budget).c_str(), format_bytes(tiers_->host_used()).c_str(), tiers_->predicted_decode_tok_s,
      tiers_->bound.c_str()));
  if (tier_profile_->machine == kNominalProfile)
    placement_.push_back("planned with nominal bandwidths; run 'flexinfer probe' once (or pass --profile FILE) for a "
                         "placement fitted to this machine");
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
