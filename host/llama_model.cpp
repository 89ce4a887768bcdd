#include "host/llama_model.h"

#include <algorithm>

#include "host/repack.h"
#include "io/error.h"
#include "io/file.h"

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

std::unique_ptr<LlamaModel> LlamaModel::load(const std::string& path) {
  std::unique_ptr<LlamaModel> model(new LlamaModel(GgufFile::open(path)));
  const GgufFile& file = model->file_;
  model->config_ = LlamaConfig::from_gguf(file);
  LlamaTensorSet set;
  try {
    set = LlamaTensorSet::require(file.tensors(), model->config_);
  } catch (const Error& error) {
    fail("%s: %s", path.c_str(), error.what());
  }

  // One allocation spanning the needed tensors, filled by large reads.
  uint64_t begin = UINT64_MAX, end = 0;
  for (const TensorInfo* tensor : set.tensors) {
    begin = std::min(begin, tensor->file_offset);
    end = std::max(end, tensor->file_offset + tensor->bytes);
    model->weight_bytes_ += tensor->bytes;
  }
  const uint64_t aligned_begin = begin / 64 * 64;
  model->storage_ = PageBuffer(end - aligned_begin);
  ReadFile reader(path);
  constexpr uint64_t kChunk = 64ull << 20;
  for (uint64_t offset = aligned_begin; offset < end; offset += kChunk)
    reader.read_exact(model->storage_.as<uint8_t>() + (offset - aligned_begin), std::min(kChunk, end - offset), offset);

  const uint8_t* base = model->storage_.as<uint8_t>() - aligned_begin;
  const TensorTable& table = file.tensors();
  auto matrix = [&](const std::string& name) {
    const TensorInfo& info = *table.find(name);
    return WeightMatrix{info.type, static_cast<int64_t>(info.shape[0]), static_cast<int64_t>(info.shape[1]),
                        row_bytes(info.type, info.shape[0]), base + info.file_offset};
  };
  auto vector = [&](const std::string& name) {
    return reinterpret_cast<const float*>(base + table.find(name)->file_offset);
  };
  LlamaWeights& w = model->weights_;
  w.token_embedding = matrix("token_embd.weight");
  w.output_norm = vector("output_norm.weight");
  w.output = set.tied_output ? w.token_embedding : matrix("output.weight");
  if (table.find("rope_freqs.weight")) w.rope_freq_factors = vector("rope_freqs.weight");
  for (int64_t l = 0; l < model->config_.n_layers; ++l) {
    LayerWeights layer;
    layer.attn_norm = vector(layer_tensor(l, "attn_norm"));
    layer.wq = matrix(layer_tensor(l, "attn_q"));
    layer.wk = matrix(layer_tensor(l, "attn_k"));
    layer.wv = matrix(layer_tensor(l, "attn_v"));
    layer.wo = matrix(layer_tensor(l, "attn_output"));
    layer.ffn_norm = vector(layer_tensor(l, "ffn_norm"));
    layer.w_gate = matrix(layer_tensor(l, "ffn_gate"));
    layer.w_up = matrix(layer_tensor(l, "ffn_up"));
    layer.w_down = matrix(layer_tensor(l, "ffn_down"));
    w.layers.push_back(layer);
  }

  // Matrices that only matmul reads get the CPU kernels' layout (the embedding, also read by row,
  // keeps the file's).
  auto prepare = [&](WeightMatrix& m) {
    if (can_interleave(m)) interleave_rows(m, const_cast<uint8_t*>(m.data));
  };
  for (LayerWeights& layer : w.layers)
    for (WeightMatrix* m : {&layer.wq, &layer.wk, &layer.wv, &layer.wo, &layer.w_gate, &layer.w_up, &layer.w_down})
      prepare(*m);
  if (!set.tied_output) prepare(w.output);
  return model;
}

}  // namespace fi
