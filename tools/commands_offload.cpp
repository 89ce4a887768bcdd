// Subcommands about memory budgets and speed: probe (measure this machine), plan (show where a
// model's bytes would live under a budget), bench (measure against the limit).
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda/device_info.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "host/engine/engine.h"
#include "host/kernels/measure.h"
#include "host/kernels/quant.h"
#include "io/async_reader.h"
#include "io/disk_probe.h"
#include "io/error.h"
#include "planner/budget.h"
#include "planner/profile.h"
#include "tools/command_support.h"
#include "tools/commands.h"

namespace fi {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void write_json(const std::string& path, const nlohmann::json& json, const char* command) {
  std::ofstream out(path);
  out << json.dump(2) << "\n";
  out.close();
  if (!out) fail("%s: cannot write '%s'", command, path.c_str());
}

// The profile to predict with: --profile FILE, else the one probe cached, else none.
std::optional<Profile> chosen_profile(const Args& args) {
  if (args.has("--profile")) return Profile::load(args.text("--profile", ""));
  return cached_profile();
}

// Weight bytes the CPU reads per decoded token: every planned matrix plus one embedding row.
uint64_t compute_bytes_per_token(const Plan& plan, const TensorTable& table, const LlamaConfig& config) {
  return plan.weight_bytes() + row_bytes(table.find("token_embd.weight")->type, static_cast<uint64_t>(config.dim));
}

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

}  // namespace

// A deterministic prompt of ordinary tokens (BOS first), evaluated as one batch.
std::vector<int32_t> bench_prompt(const Engine& engine, int64_t tokens) {
  std::vector<int32_t> prompt;
  if (engine.tokenizer().bos() >= 0) prompt.push_back(engine.tokenizer().bos());
  std::mt19937 rng(1);
  const auto vocab = static_cast<uint32_t>(engine.config().vocab);
  while (static_cast<int64_t>(prompt.size()) < tokens) {
    const auto token = static_cast<int32_t>(rng() % vocab);
    if (engine.tokenizer().kind(token) == TokenKind::Normal || engine.tokenizer().kind(token) == TokenKind::Byte)
      prompt.push_back(token);
  }
  return prompt;
}

// bench with --gpu-mem: the limit is the slowest of the weights the GPU reads per token over its
// measured read bandwidth plus those the CPU decodes over its matrix-vector rate, the uploads over
// pinned PCIe and the disk reads; prefill reports the matrix products' FLOP/s.
int bench_on_gpu(const Args& args, const EngineOptions& options, int64_t prompt_tokens, int64_t decode_tokens) {
  auto engine = std::make_unique<Engine>(options);
  const GgufFile& file = engine->model().file();
  uint64_t matrix_bytes = 0, matrix_elements = 0;
  for (const TensorInfo* tensor : gpu_tensors(file, engine->config(), engine->model().tied_output()))
    if (tensor->n_dims == 2 && tensor->name != "token_embd.weight") {
      matrix_bytes += tensor->bytes;
      matrix_elements += tensor->elements();
    }
  const TensorInfo* output = file.tensors().find(engine->model().tied_output() ? "token_embd.weight" : "output.weight");
  const uint64_t output_elements = output->elements();
  if (engine->model().tied_output()) {
    matrix_bytes += output->bytes;
    matrix_elements += output_elements;
  }
  const cuda::DeviceBandwidth measured = cuda::measure_bandwidth(256ull << 20);
  const double vram_GBps = args.has("--vram-bw") ? args.real("--vram-bw", 0.0, 0.0, 1e6) : measured.vram_read_GBps;
  const auto profile = cached_profile();
  const double disk_GBps = args.real("--disk-bw", profile ? profile->disk_read_GBps : 0.0, 0.0, 1e6);

  const std::vector<int32_t> prompt = bench_prompt(*engine, prompt_tokens);
  std::vector<float> logits(static_cast<size_t>(engine->config().vocab));
  engine->forward().eval(std::span<const int32_t>(prompt.data(), 1), logits.data());  // warm-up: kernels, cuBLAS
  engine->forward().reset();
  auto start = std::chrono::steady_clock::now();
  engine->forward().eval(prompt, logits.data());
  const double prefill_seconds = seconds_since(start);
  engine->forward().reset();
  int32_t token = prompt[0];
  start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < decode_tokens; ++i) {
    engine->forward().eval(std::span<const int32_t>(&token, 1), logits.data());
    token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  const double decode_seconds = seconds_since(start);
  write_trace(args, *engine);

  const auto n = static_cast<double>(prompt.size());
  const double prefill_tok_s = n / prefill_seconds;
  // Matrix products only (attention adds about 1% at 512 tokens): every layer for every token,
  // the output head for the last.
  const double prefill_flops = 2.0 * (static_cast<double>(matrix_elements - output_elements) * n +
                                      static_cast<double>(output_elements));
  const double prefill_tflop_s = prefill_flops / prefill_seconds / 1e12;
  const double decode_tok_s = static_cast<double>(decode_tokens) / decode_seconds;
  // The limit (DESIGN.md): the slowest of VRAM, PCIe (what streams to the GPU) and the disk (what
  // is read from it), each over the bandwidth measured in this run (the disk's from the profile or
  // --disk-bw).
  const auto& tiers = engine->tiers();
  const uint64_t upload_bytes = tiers ? tiers->upload_bytes_per_token() : 0;
  const uint64_t disk_bytes = tiers ? tiers->disk_bytes_per_token() : 0;
  const uint64_t cpu_bytes = tiers ? tiers->cpu_bytes_per_token() : 0;
  const uint64_t gpu_bytes = matrix_bytes - cpu_bytes;
  // The CPU-decoded layers' rate: measured here on their commonest weight type, or --cpu-bw.
  double cpu_GBps = 0.0;
  if (cpu_bytes > 0) {
    std::map<TensorType, uint64_t> bytes_by_type;
    for (const TierUnit& unit : tiers->units)
      if (unit.decode == ComputeDevice::Cpu)
        for (const TierMatrix& m : unit.matrices) bytes_by_type[m.tensor->type] += m.bytes();
    const TensorType commonest = std::max_element(bytes_by_type.begin(), bytes_by_type.end(), [](const auto& a, const auto& b) {
                                   return a.second < b.second;
                                 })->first;
    cpu_GBps = args.has("--cpu-bw") ? args.real("--cpu-bw", 0.0, 0.0, 1e6)
                                    : measure_matvec_GBps(engine->pool(), commonest, 512ull << 20, 3);
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
              format_bytes(*options.gpu_budget).c_str(), format_bytes(device_bytes).c_str(),
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
  if (tiers)
    std::printf("host memory      %s planned of %s budget; peak RSS %s\n", format_bytes(tiers->host_used()).c_str(),
                tiers->host_budget ? format_bytes(*tiers->host_budget).c_str() : "no", format_bytes(peak_rss_bytes()).c_str());
  if (disk_known)
    std::printf("limit            %.2f tok/s (%s-bound); achieved/limit %.1f%%\n", limit_tok_s, bound.c_str(),
                100.0 * decode_tok_s / limit_tok_s);
  else
    std::printf("limit            unknown: the disk's bandwidth is needed (run 'flexinfer probe' or pass --disk-bw)\n");
  if (args.has("--json")) {
    const nlohmann::json result = {
        {"model", options.model_path},
        {"device", device_name},
        {"gpu_budget_bytes", *options.gpu_budget},
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
    write_json(args.text("--json", ""), result, "bench");
  }
  return 0;
}

int command_probe(int argc, char** argv) {
  const Args args("probe",
                  {{{"-m", "--model", "--file"}, true, "measure the disk this file is on (default: a temporary 1 GiB file in the cache directory)"},
                   {{"-o", "--output"}, true, "where to save the profile (default: the cache directory)"},
                   {{"--quick"}, false, "fewer and shorter measurements"},
                   kThreads},
                  argc, argv, 2);
  if (print_help(args)) return 0;
  no_positional(args, "probe");
  const bool quick = args.has("--quick");
  const std::string output = args.text("-o", default_profile_path());
  Profile profile;

  std::string disk_file = args.text("-m", "");
  std::string temporary;
  if (disk_file.empty()) {
    temporary = output + ".probe-data";
    Profile{}.save(temporary);  // creates the directories
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    std::vector<char> block(1 << 20);
    std::mt19937_64 rng(1);
    for (int i = 0; i < 1024 && out; ++i) {
      for (size_t j = 0; j + 8 <= block.size(); j += 8) *reinterpret_cast<uint64_t*>(&block[j]) = rng();
      out.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
    out.close();
    if (!out) fail("probe: cannot write a test file at '%s' (give one with --file)", temporary.c_str());
    disk_file = temporary;
  }
  std::printf("disk: direct reads of %s\n  %-8s %-10s %8s\n", disk_file.c_str(), "queue", "request", "GB/s");
  std::vector<DiskRate> rates;
  try {
    rates = measure_disk(disk_file, quick ? std::vector<int>{4, 32} : std::vector<int>{4, 16, 32, 64},
                         quick ? std::vector<uint64_t>{1u << 20} : std::vector<uint64_t>{256u << 10, 1u << 20, 4u << 20},
                         quick ? 128ull << 20 : 512ull << 20);
  } catch (...) {
    if (!temporary.empty()) ::unlink(temporary.c_str());
    throw;
  }
  if (!temporary.empty()) ::unlink(temporary.c_str());
  for (const DiskRate& r : rates) {
    std::printf("  %-8d %-10s %8.2f\n", r.queue_depth, format_bytes(r.request_bytes).c_str(), r.GBps);
    profile.disk_points.push_back({r.queue_depth, r.request_bytes, r.GBps});
  }
  const DiskRate best = choose_disk_setting(rates);
  profile.disk_read_GBps = best.GBps;
  profile.disk_queue_depth = best.queue_depth;
  profile.disk_request_bytes = best.request_bytes;
  std::printf("  chosen: queue depth %d, %s requests: %.2f GB/s\n", best.queue_depth,
              format_bytes(best.request_bytes).c_str(), best.GBps);

  ThreadPool pool(static_cast<int>(args.integer("-t", default_thread_count(), 1, 1024)));
  profile.cpu_threads = pool.size();
  const int rounds = quick ? 2 : 4;
  profile.host_read_GBps = measure_memory_read_GBps(pool, quick ? 1ull << 30 : 2ull << 30, rounds);
  std::printf("memory read: %.2f GB/s (%d threads)\n", profile.host_read_GBps, pool.size());
  profile.cpu_matvec_GBps = measure_matvec_GBps(pool, TensorType::Q4_0, quick ? 512ull << 20 : 1ull << 30, rounds);
  std::printf("CPU Q4_0 matrix-vector: %.2f GB/s of weights (%s kernels)\n", profile.cpu_matvec_GBps, kernel_isa_name());
  // The other types models come in: the planner weighs CPU-decoded layers by their own type's rate.
  profile.cpu_matvec_GBps_by_type[type_name(TensorType::Q4_0)] = profile.cpu_matvec_GBps;
  for (TensorType type : {TensorType::F16, TensorType::BF16, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q5_K,
                          TensorType::Q6_K}) {
    const double rate = measure_matvec_GBps(pool, type, quick ? 128ull << 20 : 512ull << 20, quick ? 2 : 3);
    profile.cpu_matvec_GBps_by_type[type_name(type)] = rate;
    std::printf("CPU %s matrix-vector: %.2f GB/s of weights\n", type_name(type), rate);
  }
  profile.machine = strprintf("%d threads, %s kernels", pool.size(), kernel_isa_name());

  std::string no_gpu;
  const auto devices = cuda::list_devices(&no_gpu);
  if (devices.empty()) {
    std::printf("GPU: none (%s)\n", no_gpu.c_str());
  } else {
    cuda::use_device(0);
    const cuda::DeviceBandwidth bandwidth = cuda::measure_bandwidth(quick ? 128ull << 20 : 512ull << 20);
    profile.gpu = devices[0].name;
    profile.h2d_pinned_GBps = bandwidth.h2d_pinned_GBps;
    profile.h2d_pageable_GBps = bandwidth.h2d_pageable_GBps;
    profile.d2h_GBps = bandwidth.d2h_GBps;
    profile.vram_read_GBps = bandwidth.vram_read_GBps;
    profile.gpu_matvec_GBps = cuda::measure_matvec_GBps(TensorType::Q4_0, quick ? 128ull << 20 : 512ull << 20);
    std::printf("GPU %s: host to device %.1f GB/s pinned, %.1f GB/s pageable; device to host %.1f GB/s; VRAM read "
                "%.0f GB/s; Q4_0 matrix-vector %.0f GB/s of weights\n",
                profile.gpu.c_str(), profile.h2d_pinned_GBps, profile.h2d_pageable_GBps, profile.d2h_GBps,
                profile.vram_read_GBps, profile.gpu_matvec_GBps);
    profile.machine += ", " + profile.gpu;
  }
  profile.save(output);
  std::printf("saved %s\n", output.c_str());
  return 0;
}

// plan with --gpu-mem: the three-tier placement, for this machine's cached profile or --profile.
int plan_three_tiers(const Args& args, const GgufFile& file, const LlamaConfig& config, const LlamaTensorSet& tensors,
                     const ModelOptions& options, int threads) {
  const auto profile = chosen_profile(args);
  if (!profile) fail("plan: --gpu-mem needs a profile with GPU measurements: run 'flexinfer probe' or pass --profile FILE");
  const TierPlan plan =
      make_tier_plan(llama_tier_input(file, config, tensors, options, threads, *gpu_budget(args)), *profile);
  uint64_t weights = 0;
  for (const TierUnit& unit : plan.units) weights += unit.bytes();
  std::printf("model     %s (%lld layers, %s of weights)\n", file.path().c_str(), static_cast<long long>(config.n_layers),
              format_bytes(weights).c_str());
  std::printf("profile   %s\n", profile->machine.empty() ? profile->gpu.c_str() : profile->machine.c_str());
  auto show_tier = [](const char* name, std::optional<uint64_t> budget, uint64_t used, const std::vector<PlanCost>& costs,
                      uint64_t resident) {
    std::printf("\n%s: budget %s, used %s\n", name, budget ? format_bytes(*budget).c_str() : "none",
                format_bytes(used).c_str());
    for (const PlanCost& cost : costs) std::printf("  %-38s %12s\n", cost.what.c_str(), format_bytes(cost.bytes).c_str());
    std::printf("  %-38s %12s\n", "resident weights", format_bytes(resident).c_str());
  };
  uint64_t gpu_resident = 0, host_resident = 0;
  for (const TierUnit& unit : plan.units) {
    gpu_resident += unit.gpu_bytes();
    host_resident += unit.host_bytes();
  }
  show_tier("GPU", plan.gpu_budget, plan.gpu_used(), plan.gpu_costs, gpu_resident);
  show_tier("host memory", plan.host_budget, plan.host_used(), plan.host_costs, host_resident);

  std::printf("\n  %-8s %-7s %-7s %12s %12s %12s\n", "unit", "decode", "prefill", "gpu", "host", "disk");
  for (const TierUnit& unit : plan.units)
    std::printf("  %-8s %-7s %-7s %12s %12s %12s\n", unit.name.c_str(), device_name(unit.decode),
                device_name(unit.prefill), format_bytes(unit.gpu_bytes()).c_str(), format_bytes(unit.host_bytes()).c_str(),
                format_bytes(unit.disk_bytes()).c_str());
  std::printf("\nper token: %s read from disk, %s uploaded to the GPU, %s computed on the CPU, %s on the GPU\n",
              format_bytes(plan.disk_bytes_per_token()).c_str(), format_bytes(plan.upload_bytes_per_token()).c_str(),
              format_bytes(plan.cpu_bytes_per_token()).c_str(), format_bytes(plan.gpu_bytes_per_token()).c_str());
  std::printf("predicted decode: %.2f tok/s, bound by %s (per token: disk %.4f s, PCIe %.4f s, CPU %.4f s + GPU %.4f s)\n",
              plan.predicted_decode_tok_s, plan.bound.c_str(), plan.seconds.disk, plan.seconds.pcie, plan.seconds.cpu,
              plan.seconds.gpu);

  if (args.has("--json")) {
    nlohmann::json layers = nlohmann::json::array();
    for (const TierUnit& unit : plan.units)
      layers.push_back({{"name", unit.name},
                        {"decode_device", device_name(unit.decode)},
                        {"prefill_device", device_name(unit.prefill)},
                        {"weight_bytes", {{"gpu", unit.gpu_bytes()}, {"host", unit.host_bytes()}, {"disk", unit.disk_bytes()}}},
                        {"kv_cache_bytes", unit.kv_bytes}});
    auto costs = [](const std::vector<PlanCost>& list) {
      nlohmann::json json = nlohmann::json::array();
      for (const PlanCost& cost : list) json.push_back({{"what", cost.what}, {"bytes", cost.bytes}});
      return json;
    };
    const nlohmann::json json = {
        {"model", file.path()},
        {"profile", profile->machine},
        {"gpu", {{"budget_bytes", plan.gpu_budget}, {"used_bytes", plan.gpu_used()}, {"fixed", costs(plan.gpu_costs)},
                 {"resident_weight_bytes", gpu_resident}}},
        {"host", {{"budget_bytes", plan.host_budget ? nlohmann::json(*plan.host_budget) : nlohmann::json(nullptr)},
                  {"used_bytes", plan.host_used()}, {"fixed", costs(plan.host_costs)},
                  {"resident_weight_bytes", host_resident}}},
        {"layers", layers},
        {"bytes_per_token", {{"disk", plan.disk_bytes_per_token()}, {"upload", plan.upload_bytes_per_token()},
                             {"host", plan.cpu_bytes_per_token()}, {"gpu", plan.gpu_bytes_per_token()}}},
        {"seconds_per_token", {{"disk", plan.seconds.disk}, {"pcie", plan.seconds.pcie}, {"cpu", plan.seconds.cpu},
                               {"gpu", plan.seconds.gpu}}},
        {"predicted_decode_tok_s", plan.predicted_decode_tok_s},
        {"bound", plan.bound},
    };
    write_json(args.text("--json", ""), json, "plan");
  }
  return 0;
}

int command_plan(int argc, char** argv) {
  const Args args("plan",
                  {kModel, kHostMem, kGpuMem, kContext, kThreads,
                   {{"--profile"}, true, "a probe profile to predict with (default: this machine's cached one)"},
                   {{"--json"}, true, "also write the plan as JSON to this file"}},
                  argc, argv, 2);
  if (print_help(args)) return 0;
  no_positional(args, "plan");
  const GgufFile file = GgufFile::open(args.required_text("-m"));
  const LlamaConfig config = LlamaConfig::from_gguf(file);
  LlamaTensorSet tensors;
  try {
    tensors = LlamaTensorSet::require(file.tensors(), config);
  } catch (const Error& error) {
    fail("%s: %s", file.path().c_str(), error.what());
  }
  ModelOptions options;
  options.host_budget = host_budget(args);
  options.context = args.integer("--ctx", std::min<int64_t>(4096, config.trained_context), 1, 1 << 24);
  const int threads = static_cast<int>(args.integer("-t", default_thread_count(), 1, 1024));
  if (gpu_budget(args)) return plan_three_tiers(args, file, config, tensors, options, threads);
  const Plan plan = make_plan(llama_plan_input(file, config, tensors, options, threads));

  std::printf("model     %s (%lld layers, %s of weights)\n", file.path().c_str(), static_cast<long long>(config.n_layers),
              format_bytes(plan.weight_bytes()).c_str());
  std::printf("budget    %s (minimum %s)\n", plan.host_budget ? format_bytes(*plan.host_budget).c_str() : "none",
              format_bytes(plan.minimum_host_bytes).c_str());
  std::printf("\nhost memory:\n");
  for (const PlanCost& cost : plan.fixed) std::printf("  %-34s %12s\n", cost.what.c_str(), format_bytes(cost.bytes).c_str());
  if (plan.streams())
    std::printf("  %-34s %12s\n", strprintf("staging (%d slots x %s)", plan.depth, format_bytes(plan.slot_bytes).c_str()).c_str(),
                format_bytes(plan.staging_bytes()).c_str());
  std::printf("  %-34s %12s\n", "resident weights", format_bytes(plan.resident_span_bytes()).c_str());
  std::printf("  %-34s %12s\n", "total", format_bytes(plan.host_bytes()).c_str());

  std::printf("\n  %-8s %12s %12s %12s\n", "unit", "resident", "streamed", "read/token");
  for (const PlanUnit& unit : plan.units)
    std::printf("  %-8s %12s %12s %12s\n", unit.name.c_str(), format_bytes(unit.resident_bytes()).c_str(),
                format_bytes(unit.streamed_bytes()).c_str(), format_bytes(unit.read_bytes()).c_str());
  const uint64_t compute_bytes = compute_bytes_per_token(plan, file.tensors(), config);
  std::printf("\nper token: %s read from disk, %s read by the CPU from host memory\n",
              format_bytes(plan.read_bytes_per_token()).c_str(), format_bytes(compute_bytes).c_str());

  const auto profile = chosen_profile(args);
  Prediction prediction;
  if (profile) {
    prediction = predict_decode(plan, *profile, compute_bytes);
    std::printf("predicted decode: %.2f tok/s, bound by %s (disk %.3f s, compute %.3f s per token; disk %.2f GB/s, "
                "CPU %.2f GB/s)\n",
                prediction.decode_tok_s, prediction.bound.c_str(), prediction.disk_seconds, prediction.compute_seconds,
                profile->disk_read_GBps, profile->cpu_matvec_GBps);
  } else {
    std::printf("no prediction: run 'flexinfer probe' once (or pass --profile FILE)\n");
  }

  if (args.has("--json")) {
    nlohmann::json units = nlohmann::json::array();
    for (const PlanUnit& unit : plan.units)
      units.push_back({{"name", unit.name},
                       {"decode_device", "cpu"},
                       {"prefill_device", "cpu"},
                       {"weight_bytes", {{"gpu", 0}, {"host", unit.resident_bytes()}, {"disk", unit.streamed_bytes()}}},
                       {"read_bytes", unit.read_bytes()}});
    nlohmann::json fixed = nlohmann::json::array();
    for (const PlanCost& cost : plan.fixed) fixed.push_back({{"what", cost.what}, {"bytes", cost.bytes}});
    const nlohmann::json json = {
        {"model", file.path()},
        {"host", {{"budget_bytes", plan.host_budget ? nlohmann::json(*plan.host_budget) : nlohmann::json(nullptr)},
                  {"used_bytes", plan.host_bytes()},
                  {"minimum_bytes", plan.minimum_host_bytes},
                  {"fixed", fixed},
                  {"staging_slots", plan.depth},
                  {"slot_bytes", plan.slot_bytes},
                  {"resident_weight_bytes", plan.resident_bytes()}}},
        {"gpu", {{"budget_bytes", 0}, {"used_bytes", 0}}},
        {"layers", units},
        {"bytes_per_token", {{"disk", plan.read_bytes_per_token()}, {"host", compute_bytes}, {"gpu", 0}}},
        {"predicted_decode_tok_s", profile ? nlohmann::json(prediction.decode_tok_s) : nlohmann::json(nullptr)},
        {"bound", profile ? nlohmann::json(prediction.bound) : nlohmann::json(nullptr)},
    };
    write_json(args.text("--json", ""), json, "plan");
  }
  return 0;
}

int command_bench(int argc, char** argv) {
  const Args args("bench",
                  {kModel, {{"-p", "--prompt-tokens"}, true, "prompt length for the prefill measurement (default 128)"},
                   {{"-n", "--decode-tokens"}, true, "tokens to decode (default 32)"},
                   {{"--cold"}, false, "evict the model file from the page cache first"},
                   {{"--mem-bw"}, true, "memory read bandwidth in GB/s for the limit (default: from the probe profile)"},
                   {{"--disk-bw"}, true, "disk read bandwidth in GB/s for the limit (default: from the probe profile)"},
                   {{"--measure-disk"}, false,
                    "measure the disk through the streaming pipeline itself (same reads, slots and reader, no "
                    "compute) just before and after the run, and take the limit from their mean (shared disks drift)"},
                   {{"--vram-bw"}, true, "GPU memory read bandwidth in GB/s for the limit (default: measured)"},
                   {{"--cpu-bw"}, true,
                    "CPU matrix-vector rate in GB/s for the layers decoded on the CPU (default: measured in the run)"},
                   {{"--json"}, true, "also write the results as JSON to this file"},
                   kThreads, kContext, kHostMem, kGpuMem, kProfile, kIo, kTrace},
                  argc, argv, 2);
  if (print_help(args)) return 0;
  no_positional(args, "bench");
  const int64_t prompt_tokens = args.integer("-p", 128, 1, 1 << 20);
  const int64_t decode_tokens = args.integer("-n", 32, 1, 1 << 20);
  const auto profile = cached_profile();
  const double host_GBps = args.real("--mem-bw", profile ? profile->host_read_GBps : 0.0, 0.0, 1e6);
  double disk_GBps = args.real("--disk-bw", profile ? profile->disk_read_GBps : 0.0, 0.0, 1e6);
  EngineOptions options = engine_options(args);
  if (options.context == 0) options.context = prompt_tokens + decode_tokens;
  if (options.gpu_budget) return bench_on_gpu(args, options, prompt_tokens, decode_tokens);
  const bool measure_disk = args.has("--measure-disk");
  if (args.has("--cold")) evict_from_page_cache(options.model_path);
  auto engine = std::make_unique<Engine>(options);
  const int64_t vocab = engine->config().vocab;
  WeightStore& store = engine->model().store();
  if (measure_disk && !engine->model().plan().streams())
    fail("bench: --measure-disk needs a --host-mem budget under which the model streams");
  // The pipeline's own reads, slots and reader with no compute: the disk's side of the limit.
  constexpr uint64_t kDiskSample = 1536ull << 20;
  const double disk_before = measure_disk ? store.stream_only_GBps(kDiskSample) : 0.0;

  const std::vector<int32_t> prompt = bench_prompt(*engine, prompt_tokens);
  std::vector<float> logits(static_cast<size_t>(vocab));
  auto start = std::chrono::steady_clock::now();
  engine->forward().eval(prompt, logits.data());
  const double prefill_seconds = seconds_since(start);

  // Decode from a fresh cache so the attention span matches a short generation.
  engine->forward().reset();
  int32_t token = prompt[0];
  const uint64_t disk_read_before = store.streamed_bytes_read();
  const double stall_before = store.stall_seconds();
  start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < decode_tokens; ++i) {
    engine->forward().eval(std::span<const int32_t>(&token, 1), logits.data());
    token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  const double decode_seconds = seconds_since(start);
  const double stall_seconds = store.stall_seconds() - stall_before;
  const uint64_t disk_read = store.streamed_bytes_read() - disk_read_before;
  const double disk_after = measure_disk ? store.stream_only_GBps(kDiskSample) : 0.0;
  if (measure_disk) disk_GBps = (disk_before + disk_after) / 2;

  const Plan& plan = engine->model().plan();
  const uint64_t host_bytes = compute_bytes_per_token(engine->model().plan(), engine->model().file().tensors(), engine->config());
  const uint64_t disk_bytes = plan.read_bytes_per_token();
  const bool streams = plan.streams();
  const int depth = plan.depth;
  const uint64_t slot_bytes = plan.slot_bytes;
  const std::string io = streams ? store.reader().describe() : "none";
  const uint64_t arena_bytes = engine->model().arena().used();
  const bool locked = engine->model().arena().locked();
  const int threads = engine->pool().size();
  write_trace(args, *engine);
  engine.reset();

  const double prefill_tok_s = static_cast<double>(prompt.size()) / prefill_seconds;
  const double decode_tok_s = static_cast<double>(decode_tokens) / decode_seconds;
  const double host_achieved = decode_tok_s * static_cast<double>(host_bytes) / 1e9;
  const double disk_achieved = static_cast<double>(disk_read) / decode_seconds / 1e9;
  // The limit (DESIGN.md): the slowest tier, with reads and compute fully overlapped.
  double limit_seconds = 0.0;
  bool limit_known = host_GBps > 0 && (disk_bytes == 0 || disk_GBps > 0);
  if (limit_known) {
    limit_seconds = static_cast<double>(host_bytes) / (host_GBps * 1e9);
    if (disk_bytes > 0) limit_seconds = std::max(limit_seconds, static_cast<double>(disk_bytes) / (disk_GBps * 1e9));
  }
  const double limit_tok_s = limit_known ? 1.0 / limit_seconds : 0.0;
  const bool disk_bound = disk_bytes > 0 && limit_known &&
                          static_cast<double>(disk_bytes) / (disk_GBps * 1e9) >= static_cast<double>(host_bytes) / (host_GBps * 1e9);
  const uint64_t rss = peak_rss_bytes();

  std::printf("model            %s\n", options.model_path.c_str());
  std::printf("threads          %d (%s kernels)\n", threads, kernel_isa_name());
  std::printf("host budget      %s; arena %s%s\n", options.host_budget ? format_bytes(*options.host_budget).c_str() : "none",
              format_bytes(arena_bytes).c_str(), locked ? ", locked" : "");
  if (streams)
    std::printf("streaming        %s per token over %s; %d staging slots of %s\n", format_bytes(disk_bytes).c_str(),
                io.c_str(), depth, format_bytes(slot_bytes).c_str());
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
  if (measure_disk)
    std::printf("disk measured    %.2f GB/s before, %.2f GB/s after the run\n", disk_before, disk_after);
  std::printf("peak RSS         %s\n", format_bytes(rss).c_str());

  if (args.has("--json")) {
    const nlohmann::json result = {
        {"model", options.model_path},
        {"threads", threads},
        {"kernels", kernel_isa_name()},
        {"host_budget_bytes", options.host_budget ? nlohmann::json(*options.host_budget) : nlohmann::json(nullptr)},
        {"arena_bytes", arena_bytes},
        {"io", io},
        {"cold", args.has("--cold")},
        {"prompt_tokens", prompt.size()},
        {"decode_tokens", decode_tokens},
        {"prefill_tok_s", prefill_tok_s},
        {"decode_tok_s", decode_tok_s},
        {"decode_stall_seconds", stall_seconds},
        {"bytes_per_token", {{"host", host_bytes}, {"disk", disk_bytes}, {"gpu", 0}}},
        {"achieved_GBps", {{"host", host_achieved}, {"disk", disk_achieved}}},
        {"host_read_GBps", host_GBps},
        {"disk_read_GBps", disk_GBps},
        {"disk_read_GBps_before_after", measure_disk ? nlohmann::json({disk_before, disk_after}) : nlohmann::json(nullptr)},
        {"limit_tok_s", limit_tok_s},
        {"bound", limit_known ? (disk_bound ? "disk" : "host") : ""},
        {"achieved_over_limit", limit_tok_s > 0 ? decode_tok_s / limit_tok_s : 0.0},
        {"peak_rss_bytes", rss},
    };
    write_json(args.text("--json", ""), result, "bench");
  }
  return 0;
}

}  // namespace fi
