#include "host/model/model.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "io/direct_file.h"
#include "io/error.h"

namespace fi {

std::vector<float> llama3_frequency_factors(int64_t rope_dim, double rope_base, const RopeScaling& s) {
  const double low_wavelength = s.original_context / s.low_frequency_factor;
  const double high_wavelength = s.original_context / s.high_frequency_factor;
  std::vector<float> factors;
  for (int64_t i = 0; i < rope_dim / 2; ++i) {
    const double frequency = std::pow(rope_base, -2.0 * static_cast<double>(i) / static_cast<double>(rope_dim));
    const double wavelength = 2.0 * std::numbers::pi / frequency;
    if (wavelength < high_wavelength) {
      factors.push_back(1.0f);
    } else if (wavelength > low_wavelength) {
      factors.push_back(static_cast<float>(s.factor));
    } else {
      const double smooth = (s.original_context / wavelength - s.low_frequency_factor) /
                            (s.high_frequency_factor - s.low_frequency_factor);
      factors.push_back(static_cast<float>(1.0 / ((1.0 - smooth) / s.factor + smooth)));
    }
  }
  return factors;
}

std::vector<double> rope_inverse_frequencies(const ModelConfig& config, const std::vector<float>& frequency_factors) {
  const double position_scale = config.rope_scaling.type == RopeScaling::Type::Linear ? 1.0 / config.rope_scaling.factor : 1.0;
  std::vector<double> frequencies;
  for (int64_t i = 0; i < config.rope_dim / 2; ++i) {
    double frequency = std::pow(config.rope_base, -2.0 * static_cast<double>(i) / static_cast<double>(config.rope_dim));
    if (position_scale != 1.0) frequency *= position_scale;
    if (!frequency_factors.empty()) frequency /= frequency_factors[static_cast<size_t>(i)];
    frequencies.push_back(frequency);
  }
  return frequencies;
}

uint64_t kv_cache_layer_bytes(const ModelConfig& config, int64_t rows) {
  return 2 * static_cast<uint64_t>(rows) * static_cast<uint64_t>(config.kv_dim()) * sizeof(uint16_t);
}

uint64_t kv_cache_bytes(const ModelConfig& config, int64_t rows) {
  return static_cast<uint64_t>(config.n_layers) * kv_cache_layer_bytes(config, rows);
}

std::vector<float> read_f32_tensor(const GgufFile& file, const TensorInfo& info) {
  if (info.type != TensorType::F32) fail("internal: %s is not F32", info.name.c_str());
  const std::vector<uint8_t> bytes = read_file_range(file.path(), info.file_offset, info.bytes);
  std::vector<float> floats(info.elements());
  std::memcpy(floats.data(), bytes.data(), floats.size() * sizeof(float));
  return floats;
}

uint64_t runtime_bytes(const GgufFile& file, const ModelConfig& config) {
  // An allowance, not a measurement per run: code, libraries and heap at rest, a few copies of the
  // header's metadata (tokenizer), and a few vocabulary-sized arrays (logits, sampling). Peak RSS
  // and cgroup runs (docs/BENCHMARKS.md, tests/test_hardening.cpp) stay under it.
  return (24ull << 20) + 4 * file.data_offset() + 16 * static_cast<uint64_t>(config.vocab) * sizeof(float);
}

void Model::set_context(int64_t context) {
  if (context < 1 || context > kMaxContext) fail("internal: context of %lld tokens", static_cast<long long>(context));
  context_ = context;
}

std::unique_ptr<Model> Model::open(const std::string& path, const ModelOptions& options) {
  std::unique_ptr<Model> model(new Model(GgufFile::open(path)));
  const GgufFile& file = model->file_;
  model->config_ = ModelConfig::from_gguf(file);
  const ModelConfig& config = model->config_;
  try {
    model->tensors_ = ModelTensors::bind(file.tensors(), config);
  } catch (const Error& error) {
    fail("%s: %s", path.c_str(), error.what());
  }
  if (options.context < 0 || options.max_batch < 1) fail("context length and batch size must be positive");
  if (options.sequences < 1 || options.sequences > kMaxSequences)
    fail("%lld parallel sequences: between 1 and %lld", static_cast<long long>(options.sequences),
         static_cast<long long>(kMaxSequences));
  if (options.context > kMaxContext)
    fail("a context of %lld tokens is more than %lld", static_cast<long long>(options.context),
         static_cast<long long>(kMaxContext));
  model->context_ = options.context > 0 ? options.context : std::min<int64_t>(4096, config.trained_context);
  model->sequences_ = options.sequences;
  model->max_batch_ = options.max_batch;
  // Devices address cache rows with 32-bit integers.
  if (model->kv_rows() > INT32_MAX)
    fail("%lld sequences of %lld tokens are more cache rows than %d (lower --ctx or --parallel)",
         static_cast<long long>(model->sequences_), static_cast<long long>(model->context_), INT32_MAX);
  // KV caches are reserved lazily; still refuse one the machine could never hold.
  const double kv_bytes = static_cast<double>(kv_cache_bytes(config, model->kv_rows()));
  const double ram_bytes = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  if (kv_bytes > ram_bytes)
    fail("a context of %lld tokens%s needs a %.1f GiB KV cache, more than this machine's %.1f GiB of RAM (lower --ctx)",
         static_cast<long long>(model->context_),
         model->sequences_ > 1 ? strprintf(" for each of %lld sequences", static_cast<long long>(model->sequences_)).c_str() : "",
         kv_bytes / (1 << 30), ram_bytes / (1 << 30));

  std::vector<float> factors;
  if (const TensorInfo* tensor = model->tensors_.global(Role::RopeFrequencies)) factors = read_f32_tensor(file, *tensor);
  else if (config.rope_scaling.type == RopeScaling::Type::Llama3) factors = llama3_frequency_factors(config.rope_dim, config.rope_base, config.rope_scaling);
  for (float factor : factors)
    if (!(factor > 0.0f) || !std::isfinite(factor)) fail("%s: RoPE frequency factor %g is not positive", path.c_str(), factor);
  model->inverse_frequencies_ = rope_inverse_frequencies(config, factors);
  return model;
}

}  // namespace fi
