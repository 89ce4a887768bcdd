#include "host/model/llama_model.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "host/gpu/gpu_compute.h"
#include "io/direct_file.h"
#include "io/error.h"

namespace fi {

namespace {

constexpr std::initializer_list<TensorType> kMatrixTypes = {
    TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q8_0,
    TensorType::Q4_0, TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K};

int64_t require_count(const GgufFile& file, const std::string& key, int64_t low, int64_t high) {
  const auto value = file.get_uint(key);
  if (!value) fail("%s: missing metadata '%s'", file.path().c_str(), key.c_str());
  if (*value < static_cast<uint64_t>(low) || *value > static_cast<uint64_t>(high))
    fail("%s: metadata '%s' = %llu is outside %lld..%lld", file.path().c_str(), key.c_str(),
         static_cast<unsigned long long>(*value), static_cast<long long>(low), static_cast<long long>(high));
  return static_cast<int64_t>(*value);
}

std::string layer_tensor(int64_t layer, const char* name) {
  return "blk." + std::to_string(layer) + "." + name + ".weight";
}

}  // namespace

LlamaConfig LlamaConfig::from_gguf(const GgufFile& file) {
  const std::string architecture = file.get_string("general.architecture").value_or("");
  if (architecture != "llama")
    fail("%s: unsupported architecture '%s' (supported: llama)", file.path().c_str(), architecture.c_str());
  LlamaConfig config;
  config.dim = require_count(file, "llama.embedding_length", 1, 1 << 16);
  config.n_layers = require_count(file, "llama.block_count", 1, 4096);
  config.ffn_dim = require_count(file, "llama.feed_forward_length", 1, 1 << 20);
  config.n_heads = require_count(file, "llama.attention.head_count", 1, config.dim);
  config.n_kv_heads = file.find("llama.attention.head_count_kv")
                          ? require_count(file, "llama.attention.head_count_kv", 1, config.n_heads)
                          : config.n_heads;
  if (config.dim % config.n_heads != 0)
    fail("%s: embedding length %lld is not a multiple of the head count %lld", file.path().c_str(),
         static_cast<long long>(config.dim), static_cast<long long>(config.n_heads));
  if (config.n_heads % config.n_kv_heads != 0)
    fail("%s: head count %lld is not a multiple of the KV head count %lld", file.path().c_str(),
         static_cast<long long>(config.n_heads), static_cast<long long>(config.n_kv_heads));
  config.head_dim = config.dim / config.n_heads;
  if (config.head_dim % 2 != 0 || config.head_dim > 1024)
    fail("%s: head dimension %lld must be even and at most 1024", file.path().c_str(),
         static_cast<long long>(config.head_dim));
  config.rope_dim = file.find("llama.rope.dimension_count")
                        ? require_count(file, "llama.rope.dimension_count", 2, config.head_dim)
                        : config.head_dim;
  if (config.rope_dim % 2 != 0) fail("%s: rope dimension count must be even", file.path().c_str());
  config.trained_context = file.find("llama.context_length")
                               ? require_count(file, "llama.context_length", 1, 1 << 24)
                               : 2048;
  config.rope_base = file.get_float("llama.rope.freq_base").value_or(10000.0);
  config.rms_eps = file.get_float("llama.attention.layer_norm_rms_epsilon").value_or(1e-5);
  if (!(config.rope_base > 1.0) || !(config.rms_eps > 0.0 && config.rms_eps < 1.0))
    fail("%s: invalid rope base %g or RMS epsilon %g", file.path().c_str(), config.rope_base, config.rms_eps);

  const TensorInfo* embedding = file.tensors().find("token_embd.weight");
  if (!embedding) fail("%s: tensor 'token_embd.weight' is missing", file.path().c_str());
  if (embedding->n_dims != 2 || embedding->shape[1] > (1u << 22))
    fail("%s: tensor 'token_embd.weight' has shape %s, expected [%lld, n_vocab]", file.path().c_str(),
         embedding->shape_string().c_str(), static_cast<long long>(config.dim));
  config.vocab = static_cast<int64_t>(embedding->shape[1]);
  return config;
}

LlamaTensorSet LlamaTensorSet::require(const TensorTable& table, const LlamaConfig& c) {
  LlamaTensorSet set;
  const auto d = static_cast<uint64_t>(c.dim), kv = static_cast<uint64_t>(c.kv_dim()),
             ffn = static_cast<uint64_t>(c.ffn_dim), vocab = static_cast<uint64_t>(c.vocab);
  set.tensors.push_back(&table.require("token_embd.weight", {d, vocab}, kMatrixTypes));
  set.tensors.push_back(&table.require("output_norm.weight", {d}, {TensorType::F32}));
  set.tied_output = table.find("output.weight") == nullptr;
  if (!set.tied_output) set.tensors.push_back(&table.require("output.weight", {d, vocab}, kMatrixTypes));
  if (table.find("rope_freqs.weight"))
    set.tensors.push_back(&table.require("rope_freqs.weight", {static_cast<uint64_t>(c.rope_dim / 2)}, {TensorType::F32}));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    set.tensors.push_back(&table.require(layer_tensor(l, "attn_norm"), {d}, {TensorType::F32}));
    set.tensors.push_back(&table.require(layer_tensor(l, "attn_q"), {d, d}, kMatrixTypes));
    set.tensors.push_back(&table.require(layer_tensor(l, "attn_k"), {d, kv}, kMatrixTypes));
    set.tensors.push_back(&table.require(layer_tensor(l, "attn_v"), {d, kv}, kMatrixTypes));
    set.tensors.push_back(&table.require(layer_tensor(l, "attn_output"), {d, d}, kMatrixTypes));
    set.tensors.push_back(&table.require(layer_tensor(l, "ffn_norm"), {d}, {TensorType::F32}));
    set.tensors.push_back(&table.require(layer_tensor(l, "ffn_gate"), {d, ffn}, kMatrixTypes));
    set.tensors.push_back(&table.require(layer_tensor(l, "ffn_up"), {d, ffn}, kMatrixTypes));
    set.tensors.push_back(&table.require(layer_tensor(l, "ffn_down"), {ffn, d}, kMatrixTypes));
  }
  return set;
}

std::vector<float> read_f32_tensor(const GgufFile& file, const TensorInfo& info) {
  if (info.type != TensorType::F32) fail("internal: %s is not F32", info.name.c_str());
  const std::vector<uint8_t> bytes = read_file_range(file.path(), info.file_offset, info.bytes);
  std::vector<float> floats(info.elements());
  std::memcpy(floats.data(), bytes.data(), floats.size() * sizeof(float));
  return floats;
}

uint64_t runtime_bytes(const GgufFile& file, const LlamaConfig& config) {
  // An allowance, not a measurement per run: code, libraries and heap at rest, a few copies of the
  // header's metadata (tokenizer), and a few vocabulary-sized arrays (logits, sampling). Peak RSS
  // and cgroup runs (docs/BENCHMARKS.md, tests/test_hardening.cpp) stay under it.
  return (24ull << 20) + 4 * file.data_offset() + 16 * static_cast<uint64_t>(config.vocab) * sizeof(float);
}

PlanInput llama_plan_input(const GgufFile& file, const LlamaConfig& config, const LlamaTensorSet& tensors,
                           const ModelOptions& options, int threads) {
  const TensorTable& table = file.tensors();
  PlanInput input;
  input.host_budget = options.host_budget;
  for (int64_t l = 0; l < config.n_layers; ++l) {
    // Preservation order (the paper's): attention first — K and V are the smallest under GQA — then
    // the FFN, which streams in large, efficient reads.
    PlanInput::Unit unit{"blk." + std::to_string(l), {}};
    for (const char* name : {"attn_k", "attn_v", "attn_q", "attn_output", "ffn_gate", "ffn_up", "ffn_down"})
      unit.matrices.push_back(table.find(layer_tensor(l, name)));
    input.units.push_back(std::move(unit));
    input.always_resident.push_back(table.find(layer_tensor(l, "attn_norm")));
    input.always_resident.push_back(table.find(layer_tensor(l, "ffn_norm")));
  }
  input.units.push_back({"output", {table.find(tensors.tied_output ? "token_embd.weight" : "output.weight")}});
  input.always_resident.push_back(table.find("output_norm.weight"));
  if (const TensorInfo* factors = table.find("rope_freqs.weight")) input.always_resident.push_back(factors);
  // Without a budget the embedding is loaded; with one, the few rows a batch needs are read.
  if (!tensors.tied_output) input.resident_without_budget.push_back(table.find("token_embd.weight"));

  input.fixed.push_back({strprintf("KV cache (%lld tokens)", static_cast<long long>(options.context)),
                         kv_cache_bytes(config, options.context)});
  input.fixed.push_back({"scratch", forward_scratch_bytes(config, options.context, options.max_batch, threads) +
                                        2 * kDirectAlignment + row_bytes(table.find("token_embd.weight")->type,
                                                                         static_cast<uint64_t>(config.dim))});
  input.fixed.push_back({"runtime", runtime_bytes(file, config)});
  input.minimum_hint = "; a smaller --ctx shrinks the KV cache";
  return input;
}

TierInput llama_tier_input(const GgufFile& file, const LlamaConfig& config, const LlamaTensorSet& tensors,
                           const ModelOptions& options, int threads, uint64_t gpu_budget) {
  const PlanInput host = llama_plan_input(file, config, tensors, options, threads);
  TierInput input;
  input.units = host.units;
  input.kv_bytes_per_layer = kv_cache_bytes(config, options.context) / static_cast<uint64_t>(config.n_layers);
  input.gpu_budget = gpu_budget;
  input.host_budget = options.host_budget;
  const GpuMemoryPlan device = gpu_memory_plan(file, config, tensors.tied_output, options.context, options.max_batch);
  // What the GPU side holds whole besides the planned matrices: the token embedding (it embeds on the
  // device), the norms; and room for every allocation's 256-byte alignment.
  const TensorTable& table = file.tensors();
  uint64_t norms = 0;
  for (const TensorInfo* tensor : host.always_resident) norms += tensor->bytes;
  input.gpu_fixed = {{"activations and logits", device.activations},
                     {"dequantized rows (prefill)", device.dequantized},
                     {"cuBLAS workspace", device.blas_workspace},
                     {"token embedding", table.find("token_embd.weight")->bytes},
                     {"norms", norms},
                     {"allocation alignment", 256 * (table.all().size() + 64)}};
  // The host's fixed costs but the KV cache (the first one), plus the small tensors.
  input.host_fixed.assign(host.fixed.begin() + 1, host.fixed.end());
  uint64_t small_tensors = 0;
  for (const TensorInfo* tensor : host.always_resident)
    small_tensors += align_up(tensor->file_offset + tensor->bytes, kDirectAlignment) - align_down(tensor->file_offset, kDirectAlignment);
  input.host_fixed.push_back({"norms and other small tensors", small_tensors});
  input.host_fixed.push_back({"weight loading buffers (pinned)", kGpuLoadBufferBytes});
  return input;
}

std::unique_ptr<LlamaModel> LlamaModel::load(const std::string& path, ThreadPool& pool, const ModelOptions& options) {
  std::unique_ptr<LlamaModel> model(new LlamaModel(GgufFile::open(path)));
  const GgufFile& file = model->file_;
  model->config_ = LlamaConfig::from_gguf(file);
  LlamaTensorSet set;
  try {
    set = LlamaTensorSet::require(file.tensors(), model->config_);
  } catch (const Error& error) {
    fail("%s: %s", path.c_str(), error.what());
  }
  if (options.context < 0 || options.max_batch < 1) fail("context length and batch size must be positive");
  ModelOptions resolved = options;
  if (resolved.context == 0) resolved.context = std::min<int64_t>(4096, model->config_.trained_context);
  // The unbudgeted KV cache is reserved lazily; still refuse one the machine could never hold.
  const double kv_bytes = static_cast<double>(kv_cache_bytes(model->config_, resolved.context));
  const double ram_bytes = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  if (kv_bytes > ram_bytes)
    fail("a context of %lld tokens needs a %.1f GiB KV cache, more than this machine's %.1f GiB of RAM (lower --ctx)",
         static_cast<long long>(resolved.context), kv_bytes / (1 << 30), ram_bytes / (1 << 30));
  model->context_ = resolved.context;
  model->max_batch_ = resolved.max_batch;
  model->tied_output_ = set.tied_output;

  if (!options.load_weights) return model;

  const PlanInput input = llama_plan_input(file, model->config_, set, resolved, pool.size());
  model->plan_ = make_plan(input);
  // The arena holds everything planned except the runtime's own memory.
  std::optional<uint64_t> capacity;
  if (options.host_budget) capacity = model->plan_.host_bytes() - runtime_bytes(file, model->config_);
  model->arena_ = std::make_unique<HostArena>(capacity, options.host_budget.has_value());
  if (!model->arena_->lock_refusal().empty())
    std::fprintf(stderr, "flexinfer: warning: %s\n", model->arena_->lock_refusal().c_str());
  model->store_ = std::make_unique<WeightStore>(file, model->config_, set.tied_output, model->plan_, *model->arena_,
                                                pool, resolved.io);
  return model;
}

}  // namespace fi
