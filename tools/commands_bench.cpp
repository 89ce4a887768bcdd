// flexinfer bench: prefill and decode speed beside the limit the budgets and the machine imply.
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda/device_info.h"
#include "cuda/runtime.h"
#include "host/engine/engine.h"
#include "host/kernels/measure.h"
#include "host/kernels/quant.h"
#include "io/error.h"
#include "planner/budget.h"
#include "planner/plan.h"
#include "planner/profile.h"
#include "tools/cli.h"
#include "tools/command_support.h"
#include "tools/commands.h"

namespace fi {

namespace {

// Threads that keep `count` cores busy at the lowest priority (SCHED_IDLE: any other thread of this
// machine runs first) while they live. On a virtual machine a disk may read slower while the cores
// compute, a cost of the machine and not of the engine's scheduling: the disk measured beside them
// says how much.
class BusyCores {
 public:
  explicit BusyCores(int count) {
    try {
      for (int i = 0; i < count; ++i)
        threads_.emplace_back([this] {
          const sched_param lowest{};
          // Where SCHED_IDLE is refused the thread spins at normal priority, and says so.
          if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &lowest) != 0) refused_.store(true);
          while (!stop_.load(std::memory_order_relaxed)) {
          }
        });
    } catch (...) {
      stop();
      throw;
    }
  }
  BusyCores(const BusyCores&) = delete;
  BusyCores& operator=(const BusyCores&) = delete;
  ~BusyCores() { stop(); }
  // Whether every thread had its priority lowered (known once they run: ask after measuring).
  bool lowest_priority() const { return !refused_.load(); }

 private:
  void stop() {
    stop_.store(true, std::memory_order_relaxed);
    for (std::thread& thread : threads_) thread.join();
    threads_.clear();
  }
  std::atomic<bool> stop_{false};
  std::atomic<bool> refused_{false};
  std::vector<std::thread> threads_;
};

void evict_from_page_cache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("%s: cannot open to evict it from the page cache", path.c_str());
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

uint64_t peak_rss_bytes() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;
}

// A deterministic prompt of ordinary tokens (BOS first where the vocabulary adds one), evaluated as
// one batch.
std::vector<int32_t> bench_prompt(const Engine& engine, int64_t tokens) {
  std::vector<int32_t> prompt;
  if (engine.tokenizer().adds_bos()) prompt.push_back(engine.tokenizer().bos());
  std::mt19937 rng(1);
  const auto vocab = static_cast<uint32_t>(engine.config().vocab);
  while (static_cast<int64_t>(prompt.size()) < tokens) {
    const auto token = static_cast<int32_t>(rng() % vocab);
    if (engine.tokenizer().kind(token) == TokenKind::Normal || engine.tokenizer().kind(token) == TokenKind::Byte)
      prompt.push_back(token);
  }
  return prompt;
}

// The tokens decode is fed, one per pass: random ones as llama-bench's, not the model's own choice
// (a random-weight model's greedy choice repeats itself and would route every token to the same
// experts, flattering any cache).
std::vector<int32_t> bench_decode_inputs(const Engine& engine, int64_t prompt_tokens, int64_t decode_tokens) {
  const std::vector<int32_t> stream = bench_prompt(engine, prompt_tokens + decode_tokens + 1);
  return {stream.end() - decode_tokens, stream.end()};
}

struct BenchArgs {
  EngineArgs engine;
  int64_t prompt_tokens = 128, decode_tokens = 32;
  bool cold = false, measure_disk = false, measure_memory = false;
  // Bandwidths for the limit; negative: from the probe profile, or measured in the run.
  double mem_bw = -1, disk_bw = -1, vram_bw = -1, cpu_bw = -1;
  std::string json;
};

// bench on the GPU: the limit is the slowest of the weights the GPU reads per token over its
// measured read bandwidth plus those the CPU decodes over its matrix-vector rate, the uploads over
// pinned PCIe and the disk reads; prefill reports the matrix products' FLOP/s.
int bench_on_gpu(const BenchArgs& args, std::unique_ptr<Engine> engine) {
  const EngineOptions& options = engine->options();
  const int64_t prompt_tokens = args.prompt_tokens, decode_tokens = args.decode_tokens;
  const Model& model = engine->model();
  const TensorInfo* embedding = model.tensors().global(Role::TokenEmbedding);
  const GpuMatrixWork matrices = gpu_matrix_work(model, engine->host_model() ? GpuExperts::OnCpu : GpuExperts::OnGpu);
  const cuda::DeviceBandwidth measured = cuda::measure_bandwidth(256ull << 20);
  const double vram_GBps = args.vram_bw >= 0 ? args.vram_bw : measured.vram_read_GBps;
  const auto profile = cached_profile();
  const double disk_GBps = args.disk_bw >= 0 ? args.disk_bw : profile ? profile->disk_read_GBps : 0.0;

  const std::vector<int32_t> prompt = bench_prompt(*engine, prompt_tokens);
  std::vector<float> logits(static_cast<size_t>(engine->config().vocab));
  engine->forward().eval(std::span<const int32_t>(prompt.data(), 1), logits.data());  // warm-up: kernels, cuBLAS
  engine->forward().reset();
  auto start = std::chrono::steady_clock::now();
  engine->forward().eval(prompt, logits.data());
  const double prefill_seconds = seconds_since(start);
  engine->forward().reset();
  const std::vector<int32_t> inputs = bench_decode_inputs(*engine, static_cast<int64_t>(prompt.size()), decode_tokens);
  // Experts beside the GPU: each layer's expert half computes on the CPU, the experts its cache
  // missed come from disk.
  HostModel* experts_host = engine->host_model();
  const ExpertCache* expert_cache = experts_host ? experts_host->store().expert_cache() : nullptr;
  const ExpertCacheStats experts_before = expert_cache ? expert_cache->stats() : ExpertCacheStats{};
  const ExpertAssist* vram_experts = engine->gpu_expert_cache();
  const ExpertAssistStats vram_before = vram_experts ? vram_experts->stats() : ExpertAssistStats{};
  start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < decode_tokens; ++i) {
    engine->forward().eval(std::span<const int32_t>(&inputs[static_cast<size_t>(i)], 1), logits.data());
  }
  const double decode_seconds = seconds_since(start);
  const ExpertCacheStats experts_after = expert_cache ? expert_cache->stats() : ExpertCacheStats{};
  const ExpertAssistStats vram_after = vram_experts ? vram_experts->stats() : ExpertAssistStats{};
  const uint64_t vram_uses = vram_after.uses - vram_before.uses, vram_hits = vram_after.hits - vram_before.hits;
  const uint64_t vram_uploads = vram_after.uploads - vram_before.uploads;
  finish_trace(*engine);

  const auto n = static_cast<double>(prompt.size());
  const double prefill_tok_s = n / prefill_seconds;
  // Matrix products only (attention adds about 1% at 512 tokens): every layer for every token,
  // the output head for the last.
  const double prefill_flops = 2.0 * (static_cast<double>(matrices.elements - matrices.output_elements) * n +
                                      static_cast<double>(matrices.output_elements));
  const double prefill_tflop_s = prefill_flops / prefill_seconds / 1e12;
  const double decode_tok_s = static_cast<double>(decode_tokens) / decode_seconds;
  // The limit (DESIGN.md): the slowest of VRAM, PCIe (what streams to the GPU) and the disk (what
  // is read from it), each over the bandwidth measured in this run (the disk's from the profile or
  // --disk-bw).
  const auto& tiers = engine->tiers();
  uint64_t upload_bytes = tiers ? tiers->upload_bytes_per_token() : 0;
  uint64_t disk_bytes = tiers ? tiers->disk_bytes_per_token() : 0;
  uint64_t cpu_bytes = tiers ? tiers->cpu_bytes_per_token() : 0;
  uint64_t gpu_bytes = matrices.bytes - cpu_bytes;
  uint64_t expert_uses = 0, expert_hits = 0;
  if (experts_host) {
    // The chosen experts and the routers; the reads for predictions no layer chose are left out.
    cpu_bytes = compute_bytes_per_token(experts_host->plan(), model) -
                row_bytes(embedding->type, static_cast<uint64_t>(model.config().dim));  // embeds on the GPU
    for (const TensorInfo* tensor : experts_host->plan().always_resident) cpu_bytes += tensor->bytes;
    const uint64_t read = experts_after.bytes_read - experts_before.bytes_read;
    const uint64_t wasted = experts_after.speculative_bytes_wasted - experts_before.speculative_bytes_wasted;
    disk_bytes = (read - std::min(read, wasted)) / static_cast<uint64_t>(decode_tokens);
    expert_uses = experts_after.uses - experts_before.uses;
    expert_hits = experts_after.hits - experts_before.hits;
  }
  if (vram_experts) {
    // The experts the GPU computed were read from VRAM (uploaded first, if not cached), not by the CPU.
    const ModelConfig& c = model.config();
    uint64_t every_expert = 0;
    for (int64_t l = 0; l < c.n_layers; ++l)
      for (Role role : {Role::FfnGateExps, Role::FfnUpExps, Role::FfnDownExps})
        if (const TensorInfo* tensor = model.tensors().layer(l, role)) every_expert += tensor->bytes;
    const uint64_t moved = vram_uses * (every_expert / static_cast<uint64_t>(c.n_layers * c.n_experts)) /
                           static_cast<uint64_t>(decode_tokens);
    cpu_bytes -= std::min(cpu_bytes, moved);
    gpu_bytes += moved;
    upload_bytes += (vram_after.upload_bytes - vram_before.upload_bytes) / static_cast<uint64_t>(decode_tokens);
  }
  // The CPU-decoded layers' rate: measured here on their commonest weight type, or --cpu-bw.
  double cpu_GBps = 0.0;
  if (cpu_bytes > 0) {
    std::map<TensorType, uint64_t> bytes_by_type;
    if (experts_host)
      for (const auto& layer : experts_host->plan().expert_cache.experts.layers)
        for (const TensorInfo* tensor : layer) bytes_by_type[tensor->type] += tensor->bytes;
    if (experts_host && bytes_by_type.empty())  // every expert resident: the units hold them
      for (const PlanUnit& unit : experts_host->plan().units)
        for (const PlanMatrix& m : unit.matrices) bytes_by_type[m.tensor->type] += m.bytes();
    if (tiers)
      for (const TierUnit& unit : tiers->units)
        if (unit.decode == ComputeDevice::Cpu)
          for (const TierMatrix& m : unit.matrices) bytes_by_type[m.tensor->type] += m.bytes();
    const TensorType commonest = std::max_element(bytes_by_type.begin(), bytes_by_type.end(), [](const auto& a, const auto& b) {
                                   return a.second < b.second;
                                 })->first;
    cpu_GBps = args.cpu_bw >= 0 ? args.cpu_bw : measure_matvec_GBps(engine->pool(), commonest, 512ull << 20, 3);
  }
  const double achieved_GBps = decode_tok_s * static_cast<double>(gpu_bytes) / 1e9;
  const double achieved_cpu_GBps = decode_tok_s * static_cast<double>(cpu_bytes) / 1e9;
  const double gpu_seconds = static_cast<double>(gpu_bytes) / (vram_GBps * 1e9);
  const double cpu_seconds = cpu_bytes > 0 ? static_cast<double>(cpu_bytes) / (cpu_GBps * 1e9) : 0.0;
  // A token's layers run one after another: the CPU's and the GPU's times add up.
  double limit_seconds = gpu_seconds + cpu_seconds;
  std::string bound = cpu_seconds > gpu_seconds ? "cpu" : "gpu";
  if (upload_bytes > 0 && static_cast<double>(upload_bytes) / (measured.h2d_pinned_GBps * 1e9) > limit_seconds) {
    limit_seconds = static_cast<double>(upload_bytes) / (measured.h2d_pinned_GBps * 1e9);
    bound = "pcie";
  }
  const bool disk_known = disk_bytes == 0 || disk_GBps > 0;
  if (disk_bytes > 0 && disk_GBps > 0 && static_cast<double>(disk_bytes) / (disk_GBps * 1e9) > limit_seconds) {
    limit_seconds = static_cast<double>(disk_bytes) / (disk_GBps * 1e9);
    bound = "disk";
  }
  const double limit_tok_s = disk_known ? 1.0 / limit_seconds : 0.0;
  std::string why;
  const auto devices = cuda::list_devices(&why);
  const std::string device_name = devices.at(static_cast<size_t>(options.gpu_device)).name;
  const uint64_t device_bytes = tiers ? tiers->gpu_used() : engine->gpu_memory().total();

  std::printf("model            %s\n", options.model_path.c_str());
  std::printf("device           %s; GPU budget %s, arena %s (%s)\n", device_name.c_str(),
              format_bytes(engine->gpu_budget()).c_str(), format_bytes(device_bytes).c_str(),
              engine->gpu_memory().describe().c_str());
  std::printf("prefill          %zu tokens in %.3f s: %.1f tok/s, %.1f TFLOP/s (matrix products)\n", prompt.size(),
              prefill_seconds, prefill_tok_s, prefill_tflop_s);
  std::printf("decode           %" PRId64 " tokens in %.3f s: %.2f tok/s\n", decode_tokens, decode_seconds, decode_tok_s);
  std::printf("bytes per token  gpu %" PRIu64 ", cpu %" PRIu64 ", uploaded %" PRIu64 ", disk %" PRIu64 "\n", gpu_bytes,
              cpu_bytes, upload_bytes, disk_bytes);
  std::printf("achieved         VRAM %.1f GB/s of %.1f GB/s measured; PCIe %.1f GB/s of %.1f GB/s pinned", achieved_GBps,
              vram_GBps, decode_tok_s * static_cast<double>(upload_bytes) / 1e9, measured.h2d_pinned_GBps);
  if (cpu_bytes > 0) std::printf("; CPU %.1f GB/s of %.1f GB/s matrix-vector", achieved_cpu_GBps, cpu_GBps);
  std::printf("\n");
  if (experts_host)
    std::printf("experts          on the CPU beside the GPU: %.1f%% of %.1f expert uses per token found in RAM, %s per "
                "token read from disk\n",
                expert_uses ? 100.0 * static_cast<double>(expert_hits) / static_cast<double>(expert_uses) : 100.0,
                static_cast<double>(expert_uses) / static_cast<double>(decode_tokens), format_bytes(disk_bytes).c_str());
  if (vram_experts)
    std::printf("experts in VRAM  a cache of %lld: %.1f expert uses per token computed on the GPU (%.1f found there), "
                "%.1f uploads per token\n",
                static_cast<long long>(vram_experts->slots()), static_cast<double>(vram_uses) / static_cast<double>(decode_tokens),
                static_cast<double>(vram_hits) / static_cast<double>(decode_tokens),
                static_cast<double>(vram_uploads) / static_cast<double>(decode_tokens));
  if (tiers)
    std::printf("host memory      %s planned of %s budget; peak RSS %s\n", format_bytes(tiers->host_used()).c_str(),
                tiers->host_budget ? format_bytes(*tiers->host_budget).c_str() : "no", format_bytes(peak_rss_bytes()).c_str());
  if (disk_known)
    std::printf("limit            %.2f tok/s (%s-bound); achieved/limit %.1f%%\n", limit_tok_s, bound.c_str(),
                100.0 * decode_tok_s / limit_tok_s);
  else
    std::printf("limit            unknown: the disk's bandwidth is needed (run 'flexinfer probe' or pass --disk-bw)\n");
  if (!args.json.empty()) {
    const nlohmann::json result = {
        {"model", options.model_path},
        {"device", device_name},
        {"gpu_budget_bytes", engine->gpu_budget()},
        {"gpu_arena_bytes", device_bytes},
        {"prompt_tokens", prompt.size()},
        {"decode_tokens", decode_tokens},
        {"prefill_tok_s", prefill_tok_s},
        {"prefill_tflop_s", prefill_tflop_s},
        {"decode_tok_s", decode_tok_s},
        {"bytes_per_token", {{"host", cpu_bytes}, {"upload", upload_bytes}, {"disk", disk_bytes}, {"gpu", gpu_bytes}}},
        {"achieved_GBps", {{"gpu", achieved_GBps}, {"cpu", achieved_cpu_GBps},
                           {"pcie", decode_tok_s * static_cast<double>(upload_bytes) / 1e9}}},
        {"cpu_layers", tiers ? tiers->cpu_layers() : 0},
        {"experts_on_cpu", experts_host != nullptr},
        {"expert_decode_uses", expert_uses},
        {"expert_decode_hits_ram", expert_hits},
        {"vram_expert_slots", vram_experts ? vram_experts->slots() : 0},
        {"expert_decode_uses_gpu", vram_uses},
        {"expert_decode_hits_vram", vram_hits},
        {"expert_decode_uploads", vram_uploads},
        {"host_used_bytes", tiers ? tiers->host_used() : 0},
        {"peak_rss_bytes", peak_rss_bytes()},
        {"vram_read_GBps", vram_GBps},
        {"cpu_matvec_GBps", cpu_GBps},
        {"h2d_pinned_GBps", measured.h2d_pinned_GBps},
        {"disk_read_GBps", disk_GBps},
        {"limit_tok_s", limit_tok_s},
        {"bound", disk_known ? bound : ""},
        {"achieved_over_limit", limit_tok_s > 0 ? decode_tok_s / limit_tok_s : 0.0},
    };
    write_json(args.json, result, "bench");
  }
  return 0;
}

}  // namespace

int command_bench(int argc, char** argv) {
  const auto app = command_app("bench", "Measure prefill and decode speed against the limit the budgets and the machine imply.");
  BenchArgs args;
  add_engine_options(*app, args.engine);
  integer_option(*app, "-p,--prompt-tokens", args.prompt_tokens, 1, 1 << 20, "prompt length for the prefill measurement (default 128)");
  integer_option(*app, "-n,--decode-tokens", args.decode_tokens, 1, 1 << 20, "tokens to decode (default 32)");
  app->add_flag("--cold", args.cold, "evict the model file from the page cache first");
  real_option(*app, "--mem-bw", args.mem_bw, 0.0, 1e6, "memory read bandwidth in GB/s for the limit (default: from the probe profile)");
  real_option(*app, "--disk-bw", args.disk_bw, 0.0, 1e6, "disk read bandwidth in GB/s for the limit (default: from the probe profile)");
  app->add_flag("--measure-disk", args.measure_disk,
                "measure the disk through the streaming pipeline itself (same reads, slots and reader, no compute) and "
                "through the expert cache (random experts, as many queued as decode may have in flight) just before and after "
                "the run, and take the limit from their means (shared disks drift)");
  app->add_flag("--measure-memory", args.measure_memory,
                "measure the memory read bandwidth (as probe does, with this run's threads) just before loading and "
                "after the run, and take the limit's from their mean (a shared machine's memory drifts)");
  real_option(*app, "--vram-bw", args.vram_bw, 0.0, 1e6, "GPU memory read bandwidth in GB/s for the limit (default: measured)");
  real_option(*app, "--cpu-bw", args.cpu_bw, 0.0, 1e6,
              "CPU matrix-vector rate in GB/s for the layers decoded on the CPU (default: measured in the run)");
  app->add_option("--json", args.json, "also write the results as JSON to this file")->type_name("FILE");
  if (!parse_command_line(*app, argc, argv, 2)) return 0;
  EngineOptions options = engine_options(*app, args.engine);
  const int64_t prompt_tokens = args.prompt_tokens, decode_tokens = args.decode_tokens;
  const auto profile = cached_profile();
  if (args.measure_memory && args.mem_bw >= 0) fail("bench: --mem-bw and --measure-memory both set the memory's rate; give one");
  // Outside the budget's arena (before it exists and after it is gone), so that a memory cgroup of
  // the budget holds it: up to half the budget, and never less than well beyond the last-level cache.
  const uint64_t memory_sample =
      std::min<uint64_t>(1ull << 30, std::max<uint64_t>(256ull << 20, options.host_budget ? *options.host_budget / 2 : 1ull << 30));
  auto measure_memory = [&] {
    ThreadPool pool(options.threads > 0 ? options.threads : default_thread_count());  // as the engine's
    return measure_memory_read_GBps(pool, memory_sample, 3);
  };
  const double memory_before = args.measure_memory ? measure_memory() : 0.0;
  double host_GBps = args.mem_bw >= 0 ? args.mem_bw : profile ? profile->host_read_GBps : 0.0;
  double disk_GBps = args.disk_bw >= 0 ? args.disk_bw : profile ? profile->disk_read_GBps : 0.0;
  if (options.context == 0) options.context = prompt_tokens + decode_tokens;
  const bool measure_disk = args.measure_disk;
  if (args.cold) evict_from_page_cache(options.model_path);
  auto engine = std::make_unique<Engine>(options);
  show_placement(*engine);
  if (engine->on_gpu()) {
    if (args.measure_memory) fail("bench: --measure-memory sets the limit of the CPU path; this model runs on the GPU");
    return bench_on_gpu(args, std::move(engine));
  }
  const int64_t vocab = engine->config().vocab;
  HostModel& placed = *engine->host_model();
  WeightStore& store = placed.store();
  const bool measure_stream = measure_disk && placed.plan().streams();
  const bool measure_experts = measure_disk && store.expert_cache();
  if (measure_disk && !measure_stream && !measure_experts)
    fail("bench: --measure-disk needs a --host-mem budget under which the model streams or reads experts on demand");
  // The pipeline's own reads, slots and reader with no compute (and the expert cache's, as many
  // experts queued as decode may have in flight: this disk reads faster the more is in flight):
  // the disk's side of the limit.
  constexpr uint64_t kDiskSample = 1536ull << 20;
  const int queued_experts = static_cast<int>(experts_in_flight(engine->config().n_experts_used));
  // Each also beside the run's threads kept busy (BusyCores): the rate decode's reads can expect.
  struct DiskRates {
    double stream = 0.0, experts = 0.0, stream_busy = 0.0, experts_busy = 0.0;
    bool busy_at_lowest_priority = true;
  };
  const int busy_threads = engine->pool().size();
  auto measure_disk_rates = [&] {
    DiskRates rates;
    rates.stream = measure_stream ? store.stream_only_GBps(kDiskSample) : 0.0;
    rates.experts = measure_experts ? store.expert_reads_GBps(kDiskSample, queued_experts) : 0.0;
    if (measure_disk) {
      const BusyCores busy(busy_threads);
      rates.stream_busy = measure_stream ? store.stream_only_GBps(kDiskSample) : 0.0;
      // Other experts than the idle measurement's: a host that caches the file must not flatter it.
      constexpr uint64_t kOtherSample = 1;
      rates.experts_busy = measure_experts ? store.expert_reads_GBps(kDiskSample, queued_experts, kOtherSample) : 0.0;
      rates.busy_at_lowest_priority = busy.lowest_priority();
    }
    return rates;
  };
  const DiskRates rates_before = measure_disk_rates();
  const double disk_before = rates_before.stream, expert_disk_before = rates_before.experts;

  const std::vector<int32_t> prompt = bench_prompt(*engine, prompt_tokens);
  std::vector<float> logits(static_cast<size_t>(vocab));
  auto start = std::chrono::steady_clock::now();
  engine->forward().eval(prompt, logits.data());
  const double prefill_seconds = seconds_since(start);

  // Decode from a fresh cache so the attention span matches a short generation.
  engine->forward().reset();
  const std::vector<int32_t> inputs = bench_decode_inputs(*engine, static_cast<int64_t>(prompt.size()), decode_tokens);
  const ExpertCache* experts = store.expert_cache();
  const ExpertCacheStats experts_before = experts ? experts->stats() : ExpertCacheStats{};
  const uint64_t disk_read_before = store.streamed_bytes_read();
  const double stall_before = store.stall_seconds();
  start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < decode_tokens; ++i) {
    engine->forward().eval(std::span<const int32_t>(&inputs[static_cast<size_t>(i)], 1), logits.data());
  }
  const double decode_seconds = seconds_since(start);
  const ExpertCacheStats experts_after = experts ? experts->stats() : ExpertCacheStats{};
  const uint64_t expert_uses = experts_after.uses - experts_before.uses;
  const uint64_t expert_hits = experts_after.hits - experts_before.hits;
  const uint64_t expert_read = experts_after.bytes_read - experts_before.bytes_read;
  const double expert_wait = experts_after.wait_seconds - experts_before.wait_seconds;
  const uint64_t speculative_reads = experts_after.speculative_reads - experts_before.speculative_reads;
  const uint64_t speculative_used = experts_after.speculative_used - experts_before.speculative_used;
  const uint64_t speculation_paused = experts_after.speculation_paused - experts_before.speculation_paused;
  const uint64_t layers_not_read_ahead = experts_after.layers_not_read_ahead - experts_before.layers_not_read_ahead;
  const double speculation_hit_rate =
      speculative_reads ? static_cast<double>(speculative_used) / static_cast<double>(speculative_reads) : 0.0;
  const std::string expert_policy = experts ? expert_policy_name(experts->policy()) : "";
  const int64_t expert_slots = experts ? experts->slots() : 0;
  const bool expert_speculation = experts && experts->speculates();
  const bool read_ahead_measured = experts && experts->measures_read_ahead();
  const double stall_seconds = store.stall_seconds() - stall_before + expert_wait;
  const uint64_t disk_read = store.streamed_bytes_read() - disk_read_before + expert_read;
  const DiskRates rates_after = measure_disk_rates();
  const double disk_after = rates_after.stream, expert_disk_after = rates_after.experts;

  const Plan& plan = placed.plan();
  const uint64_t host_bytes = compute_bytes_per_token(plan, placed.model());
  // The experts that missed count as they were read: only the bytes a token really needed.
  // Reads for predictions their layer did not choose were not needed then: left out of the limit
  // (a later token may still use one, so this is the most the limit could be off by).
  const uint64_t wasted = experts_after.speculative_bytes_wasted - experts_before.speculative_bytes_wasted;
  const uint64_t expert_disk_bytes =
      decode_tokens > 0 ? (expert_read - std::min(wasted, expert_read)) / static_cast<uint64_t>(decode_tokens) : 0;
  const uint64_t wasted_per_token = decode_tokens > 0 ? wasted / static_cast<uint64_t>(decode_tokens) : 0;
  const uint64_t disk_bytes = plan.read_bytes_per_token() + expert_disk_bytes;
  // Streamed weights and experts each at their own measured rate where measured, else the probe's.
  const double stream_GBps = measure_stream ? (disk_before + disk_after) / 2 : disk_GBps;
  const double expert_GBps = measure_experts ? (expert_disk_before + expert_disk_after) / 2 : disk_GBps;
  const bool disk_rates_known = (plan.read_bytes_per_token() == 0 || stream_GBps > 0) && (expert_disk_bytes == 0 || expert_GBps > 0);
  // By value: it is used again after the engine (and its plan) is gone.
  const uint64_t streamed_bytes = plan.read_bytes_per_token();
  auto disk_seconds_at = [streamed_bytes, expert_disk_bytes](double streaming, double reading_experts) {
    return (streamed_bytes ? static_cast<double>(streamed_bytes) / (streaming * 1e9) : 0.0) +
           (expert_disk_bytes ? static_cast<double>(expert_disk_bytes) / (reading_experts * 1e9) : 0.0);
  };
  const double disk_seconds_per_token = disk_rates_known ? disk_seconds_at(stream_GBps, expert_GBps) : 0.0;
  if (measure_disk && disk_seconds_per_token > 0) disk_GBps = static_cast<double>(disk_bytes) / disk_seconds_per_token / 1e9;
  const bool streams = plan.streams();
  const int depth = plan.depth;
  const uint64_t slot_bytes = plan.slot_bytes;
  const std::string io = streams ? store.reader().describe() : "none";
  const uint64_t arena_bytes = placed.arena().used();
  const bool locked = placed.arena().locked();
  const int threads = engine->pool().size();
  const ModelConfig config = engine->config();
  finish_trace(*engine);
  engine.reset();
  const double memory_after = args.measure_memory ? measure_memory() : 0.0;
  if (args.measure_memory) host_GBps = (memory_before + memory_after) / 2;

  const double prefill_tok_s = static_cast<double>(prompt.size()) / prefill_seconds;
  const double decode_tok_s = static_cast<double>(decode_tokens) / decode_seconds;
  const double host_achieved = decode_tok_s * static_cast<double>(host_bytes) / 1e9;
  const double disk_achieved = static_cast<double>(disk_read) / decode_seconds / 1e9;
  // The limit (DESIGN.md): the slowest tier, with reads and compute fully overlapped.
  double limit_seconds = 0.0;
  const bool limit_known = host_GBps > 0 && (disk_bytes == 0 || disk_rates_known);
  if (limit_known) limit_seconds = std::max(static_cast<double>(host_bytes) / (host_GBps * 1e9), disk_seconds_per_token);
  const double limit_tok_s = limit_known ? 1.0 / limit_seconds : 0.0;
  const bool disk_bound =
      disk_bytes > 0 && limit_known && disk_seconds_per_token >= static_cast<double>(host_bytes) / (host_GBps * 1e9);
  const uint64_t rss = peak_rss_bytes();
  // The same limit with the disk's rates beside busy cores (not the limit: what this machine's disk
  // gives while its cores compute, for machines where that is less).
  double busy_limit_tok_s = 0.0;
  bool memory_bound_beside_busy_cores = false;
  if (measure_disk && limit_known && disk_bytes > 0) {
    const double stream_busy = (rates_before.stream_busy + rates_after.stream_busy) / 2;
    const double experts_busy = (rates_before.experts_busy + rates_after.experts_busy) / 2;
    const double host_seconds = static_cast<double>(host_bytes) / (host_GBps * 1e9);
    const double busy_disk_seconds = disk_seconds_at(stream_busy, experts_busy);
    if ((streamed_bytes == 0 || stream_busy > 0) && (expert_disk_bytes == 0 || experts_busy > 0)) {
      busy_limit_tok_s = 1.0 / std::max(host_seconds, busy_disk_seconds);
      memory_bound_beside_busy_cores = !disk_bound && busy_disk_seconds <= host_seconds;
    }
  }

  std::printf("model            %s\n", options.model_path.c_str());
  if (config.has_experts()) std::printf("experts          %s\n", config.experts_description().c_str());
  std::printf("threads          %d (%s kernels)\n", threads, kernel_isa_name());
  std::printf("host budget      %s; arena %s%s\n", options.host_budget ? format_bytes(*options.host_budget).c_str() : "none",
              format_bytes(arena_bytes).c_str(), locked ? ", locked" : "");
  if (streams)
    std::printf("streaming        %s per token over %s; %d staging slots of %s\n", format_bytes(disk_bytes).c_str(),
                io.c_str(), depth, format_bytes(slot_bytes).c_str());
  if (expert_slots > 0) {
    const double hit_rate = expert_uses ? static_cast<double>(expert_hits) / static_cast<double>(expert_uses) : 0.0;
    std::printf("experts          cache of %" PRId64 " (%s policy); decode: %.1f%% of %.1f expert uses per token found in RAM, "
                "%s per token read from disk\n",
                expert_slots, expert_policy.c_str(), 100.0 * hit_rate,
                static_cast<double>(expert_uses) / static_cast<double>(std::max<int64_t>(decode_tokens, 1)),
                format_bytes(expert_disk_bytes).c_str());
    if (expert_speculation)
      std::printf("speculation      %.1f experts per token read ahead on the next layer's predicted choice, %.1f%% of "
                  "them then chosen (%s per token read in vain, not counted in the limit); %.1f per token not read "
                  "(paused while recent predictions were often wrong)\n",
                  static_cast<double>(speculative_reads) / static_cast<double>(std::max<int64_t>(decode_tokens, 1)),
                  100.0 * speculation_hit_rate, format_bytes(wasted_per_token).c_str(),
                  static_cast<double>(speculation_paused) / static_cast<double>(std::max<int64_t>(decode_tokens, 1)));
    if (read_ahead_measured)
      std::printf("read ahead       measured as it ran: off on %.1f of %" PRId64 " layers per token; a layer took %.2f ms "
                  "reading ahead, %.2f ms not (averages at the end)\n",
                  static_cast<double>(layers_not_read_ahead) / static_cast<double>(std::max<int64_t>(decode_tokens, 1)),
                  config.n_layers, 1e3 * experts_after.layer_seconds_reading_ahead,
                  1e3 * experts_after.layer_seconds_not_reading_ahead);
  }
  std::printf("prefill          %zu tokens in %.3f s: %.2f tok/s\n", prompt.size(), prefill_seconds, prefill_tok_s);
  std::printf("decode           %" PRId64 " tokens in %.3f s: %.3f tok/s (compute waited %.3f s for reads)\n",
              decode_tokens, decode_seconds, decode_tok_s, stall_seconds);
  std::printf("bytes per token  host %" PRIu64 ", disk %" PRIu64 "\n", host_bytes, disk_bytes);
  std::printf("achieved         host %.2f GB/s, disk %.2f GB/s\n", host_achieved, disk_achieved);
  if (limit_known)
    std::printf("limit            %.3f tok/s (%s-bound; host %.2f GB/s, disk %.2f GB/s); achieved/limit %.1f%%\n",
                limit_tok_s, disk_bound ? "disk" : "memory", host_GBps, disk_GBps, 100.0 * decode_tok_s / limit_tok_s);
  else
    std::printf("limit            unknown: run 'flexinfer probe' once, or pass --mem-bw/--disk-bw\n");
  if (args.measure_memory)
    std::printf("memory measured  %.2f GB/s before, %.2f GB/s after the run (%s read by %d threads)\n", memory_before,
                memory_after, format_bytes(memory_sample).c_str(), threads);
  const bool busy_at_lowest_priority = rates_before.busy_at_lowest_priority && rates_after.busy_at_lowest_priority;
  const char* busy_priority = busy_at_lowest_priority ? "" : " (at normal priority: SCHED_IDLE was refused)";
  if (measure_stream)
    std::printf("disk measured    streaming: %.2f GB/s before, %.2f GB/s after the run; beside %d busy threads%s %.2f "
                "and %.2f\n",
                disk_before, disk_after, busy_threads, busy_priority, rates_before.stream_busy, rates_after.stream_busy);
  if (measure_experts)
    std::printf("disk measured    experts (random, %d queued): %.2f GB/s before, %.2f GB/s after the run; beside %d busy "
                "threads%s %.2f and %.2f\n",
                queued_experts, expert_disk_before, expert_disk_after, busy_threads, busy_priority,
                rates_before.experts_busy, rates_after.experts_busy);
  if (memory_bound_beside_busy_cores)
    std::printf("beside busy cores the disk still keeps up: the limit stays memory-bound\n");
  else if (busy_limit_tok_s > 0)
    std::printf("beside busy cores the disk's rates make the limit %.3f tok/s: achieved %.1f%% of that\n", busy_limit_tok_s,
                100.0 * decode_tok_s / busy_limit_tok_s);
  std::printf("peak RSS         %s\n", format_bytes(rss).c_str());

  if (!args.json.empty()) {
    const nlohmann::json result = {
        {"model", options.model_path},
        {"experts", config.n_experts},
        {"experts_used", config.n_experts_used},
        {"threads", threads},
        {"kernels", kernel_isa_name()},
        {"host_budget_bytes", options.host_budget ? nlohmann::json(*options.host_budget) : nlohmann::json(nullptr)},
        {"arena_bytes", arena_bytes},
        {"io", io},
        {"cold", args.cold},
        {"prompt_tokens", prompt.size()},
        {"decode_tokens", decode_tokens},
        {"prefill_tok_s", prefill_tok_s},
        {"decode_tok_s", decode_tok_s},
        {"decode_stall_seconds", stall_seconds},
        {"bytes_per_token", {{"host", host_bytes}, {"disk", disk_bytes}, {"gpu", 0}}},
        {"achieved_GBps", {{"host", host_achieved}, {"disk", disk_achieved}}},
        {"host_read_GBps", host_GBps},
        {"disk_read_GBps", disk_GBps},
        {"host_read_GBps_before_after",
         args.measure_memory ? nlohmann::json({memory_before, memory_after}) : nlohmann::json(nullptr)},
        {"disk_read_GBps_before_after", measure_stream ? nlohmann::json({disk_before, disk_after}) : nlohmann::json(nullptr)},
        {"expert_read_GBps_before_after",
         measure_experts ? nlohmann::json({expert_disk_before, expert_disk_after}) : nlohmann::json(nullptr)},
        {"disk_read_GBps_beside_busy_threads_before_after",
         measure_stream ? nlohmann::json({rates_before.stream_busy, rates_after.stream_busy}) : nlohmann::json(nullptr)},
        {"expert_read_GBps_beside_busy_threads_before_after",
         measure_experts ? nlohmann::json({rates_before.experts_busy, rates_after.experts_busy}) : nlohmann::json(nullptr)},
        {"limit_tok_s_disk_beside_busy_threads", busy_limit_tok_s > 0 ? nlohmann::json(busy_limit_tok_s) : nlohmann::json(nullptr)},
        {"busy_threads_at_lowest_priority", measure_disk ? nlohmann::json(busy_at_lowest_priority) : nlohmann::json(nullptr)},
        {"limit_tok_s", limit_tok_s},
        {"bound", limit_known ? (disk_bound ? "disk" : "host") : ""},
        {"achieved_over_limit", limit_tok_s > 0 ? decode_tok_s / limit_tok_s : 0.0},
        {"peak_rss_bytes", rss},
        {"expert_cache",
         expert_slots > 0 ? nlohmann::json{{"slots", expert_slots},
                                           {"policy", expert_policy},
                                           {"decode_uses", expert_uses},
                                           {"decode_hits_ram", expert_hits},
                                           {"decode_misses_disk", expert_uses - expert_hits},
                                           {"hit_rate_ram", expert_uses ? static_cast<double>(expert_hits) / static_cast<double>(expert_uses) : 0.0},
                                           {"disk_bytes_per_token", expert_disk_bytes},
                                           {"wait_seconds", expert_wait},
                                           {"speculation", expert_speculation},
                                           {"speculative_reads", speculative_reads},
                                           {"speculative_used", speculative_used},
                                           {"speculation_paused", speculation_paused},
                                           {"speculation_wasted_bytes_per_token", wasted_per_token},
                                           {"speculation_hit_rate", speculation_hit_rate},
                                           {"layers_not_read_ahead_per_token",
                                            static_cast<double>(layers_not_read_ahead) /
                                                static_cast<double>(std::max<int64_t>(decode_tokens, 1))},
                                           {"layer_seconds_reading_ahead", experts_after.layer_seconds_reading_ahead},
                                           {"layer_seconds_not_reading_ahead", experts_after.layer_seconds_not_reading_ahead}}
                          : nlohmann::json(nullptr)},
    };
    write_json(args.json, result, "bench");
  }
  return 0;
}

}  // namespace fi
