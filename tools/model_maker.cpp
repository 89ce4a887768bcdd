#include "tools/model_maker.h"

#include <cmath>
#include <utility>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "host/kernels/quant.h"
#include "io/error.h"
#include "io/gguf.h"

namespace fi {

namespace {

struct TensorPlan {
  std::string name;
  TensorType type;
  int64_t cols, rows;
  float amplitude;  // weights are uniform in [-amplitude, amplitude] (+ offset for norms)
  float offset;
};

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// One row of deterministic uniform values: the same seed gives the same file on any machine.
void fill_row(uint64_t seed, float amplitude, float offset, float* out, int64_t n) {
  uint64_t state = mix(seed);
  for (int64_t i = 0; i < n; ++i) {
    state = mix(state);
    const float unit = static_cast<float>(state >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    out[i] = offset + amplitude * (2.0f * unit - 1.0f);
  }
}

uint32_t file_type_id(WeightScheme scheme) {
  // llama.cpp's general.file_type values.
  switch (scheme) {
    case WeightScheme::F32: return 0;
    case WeightScheme::F16: return 1;
    case WeightScheme::Q4_0: return 2;
    case WeightScheme::Q8_0: return 7;
    case WeightScheme::Q4_K: return 14;  // Q4_K_S: every matrix Q4_K
    case WeightScheme::Q4_K_M: return 15;
    case WeightScheme::Q6_K: return 18;
  }
  return 0;
}

TensorType matrix_type(WeightScheme scheme) {
  switch (scheme) {
    case WeightScheme::F32: return TensorType::F32;
    case WeightScheme::F16: return TensorType::F16;
    case WeightScheme::Q8_0: return TensorType::Q8_0;
    case WeightScheme::Q4_0: return TensorType::Q4_0;
    case WeightScheme::Q4_K: return TensorType::Q4_K;
    case WeightScheme::Q4_K_M: return TensorType::Q4_K;
    case WeightScheme::Q6_K: return TensorType::Q6_K;
  }
  return TensorType::F32;
}

void write_byte_vocabulary(GgufWriter& writer) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> kinds = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(strprintf("<0x%02X>", b));
    kinds.push_back(6);
  }
  tokens.push_back("\xE2\x96\x81");  // the SentencePiece space, so spaces are one token
  kinds.push_back(1);
  writer.add_string("tokenizer.ggml.model", "llama");
  writer.add_string_array("tokenizer.ggml.tokens", tokens);
  writer.add_float32_array("tokenizer.ggml.scores", std::vector<float>(tokens.size(), 0.0f));
  writer.add_int32_array("tokenizer.ggml.token_type", kinds);
  writer.add_uint32("tokenizer.ggml.unknown_token_id", 0);
  writer.add_uint32("tokenizer.ggml.bos_token_id", 1);
  writer.add_uint32("tokenizer.ggml.eos_token_id", 2);
}

}  // namespace

std::optional<ModelShape> find_preset(const std::string& name) {
  if (name == "micro") return ModelShape{32, 1, 2, 1, 64, 128, 0, 10000.0, false};  // fuzzing seeds
  if (name == "tiny") return ModelShape{256, 4, 8, 4, 768, 2048, 0, 10000.0, false};
  if (name == "1b") return ModelShape{2048, 16, 32, 8, 8192, 8192, 0, 500000.0, true};
  if (name == "7b") return ModelShape{4096, 32, 32, 32, 11008, 4096, 0, 10000.0, false};
  if (name == "13b") return ModelShape{5120, 40, 40, 40, 13824, 4096, 0, 10000.0, false};
  if (name == "70b") return ModelShape{8192, 80, 64, 8, 28672, 4096, 0, 10000.0, false};
  return std::nullopt;
}

namespace {
constexpr std::pair<const char*, WeightScheme> kSchemeNames[] = {
    {"f32", WeightScheme::F32},   {"f16", WeightScheme::F16},       {"q8_0", WeightScheme::Q8_0}, {"q4_0", WeightScheme::Q4_0},
    {"q4_k", WeightScheme::Q4_K}, {"q4_k_m", WeightScheme::Q4_K_M}, {"q6_k", WeightScheme::Q6_K}};
}  // namespace

std::optional<WeightScheme> parse_weight_scheme(const std::string& name) {
  for (const auto& [text, scheme] : kSchemeNames)
    if (name == text) return scheme;
  return std::nullopt;
}

const char* weight_scheme_name(WeightScheme scheme) {
  for (const auto& [text, known] : kSchemeNames)
    if (known == scheme) return text;
  return "?";
}

namespace {

uint64_t write_model(const MakeModelOptions& options, ThreadPool& pool) {
  const ModelShape& s = options.shape;
  if (s.dim <= 0 || s.n_heads <= 0 || s.dim % s.n_heads != 0 || s.n_kv_heads <= 0 || s.n_heads % s.n_kv_heads != 0 ||
      s.n_layers <= 0 || s.ffn_dim <= 0 || (s.dim / s.n_heads) % 2 != 0)
    fail("make-model: inconsistent shape (dim %lld, heads %lld, kv heads %lld)", static_cast<long long>(s.dim),
         static_cast<long long>(s.n_heads), static_cast<long long>(s.n_kv_heads));
  const int64_t head_dim = s.dim / s.n_heads;
  const int64_t kv_dim = head_dim * s.n_kv_heads;

  GgufWriter writer(options.output_path);
  writer.add_string("general.architecture", "llama");
  writer.add_string("general.name", "flexinfer-random-llama");
  writer.add_uint32("general.file_type", file_type_id(options.scheme));
  if (options.scheme != WeightScheme::F32 && options.scheme != WeightScheme::F16)
    writer.add_uint32("general.quantization_version", 2);
  writer.add_uint32("llama.context_length", static_cast<uint32_t>(s.context));
  writer.add_uint32("llama.embedding_length", static_cast<uint32_t>(s.dim));
  writer.add_uint32("llama.block_count", static_cast<uint32_t>(s.n_layers));
  writer.add_uint32("llama.feed_forward_length", static_cast<uint32_t>(s.ffn_dim));
  writer.add_uint32("llama.rope.dimension_count", static_cast<uint32_t>(s.rope_dim > 0 ? s.rope_dim : head_dim));
  writer.add_uint32("llama.attention.head_count", static_cast<uint32_t>(s.n_heads));
  writer.add_uint32("llama.attention.head_count_kv", static_cast<uint32_t>(s.n_kv_heads));
  writer.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  writer.add_float32("llama.rope.freq_base", static_cast<float>(s.rope_base));

  int64_t vocab = 0;
  if (options.vocab_path.empty()) {
    write_byte_vocabulary(writer);
    vocab = 260;
  } else {
    const GgufFile source = GgufFile::open(options.vocab_path);
    for (const auto& [key, value] : source.metadata())
      if (key.rfind("tokenizer.", 0) == 0) writer.add_value(key, value);
    vocab = static_cast<int64_t>(source.get_string_array("tokenizer.ggml.tokens").size());
    if (vocab == 0) fail("%s: has no tokenizer.ggml.tokens to copy", options.vocab_path.c_str());
  }

  const TensorType matrices = matrix_type(options.scheme);
  // llama.cpp keeps the output matrix at higher precision in its 4-bit files; do the same.
  const bool four_bit = options.scheme == WeightScheme::Q4_0 || options.scheme == WeightScheme::Q4_K ||
                        options.scheme == WeightScheme::Q4_K_M;
  const TensorType output_type = four_bit ? TensorType::Q6_K : matrices;
  // Q4_K_M as llama.cpp mixes it: attn_v and ffn_down in Q6_K for the first and last eighth of the
  // layers and every third one between, so layers differ in size.
  auto more_bits = [&](int64_t l) {
    const int64_t n = s.n_layers;
    return options.scheme == WeightScheme::Q4_K_M && (l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2);
  };
  std::vector<TensorPlan> plan;
  auto fan_in = [](int64_t cols) { return static_cast<float>(std::sqrt(3.0 / static_cast<double>(cols))); };
  plan.push_back({"token_embd.weight", matrices, s.dim, vocab, 1.0f, 0.0f});
  for (int64_t l = 0; l < s.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    plan.push_back({p + "attn_norm.weight", TensorType::F32, s.dim, 1, 0.1f, 1.0f});
    plan.push_back({p + "attn_q.weight", matrices, s.dim, s.dim, fan_in(s.dim), 0.0f});
    plan.push_back({p + "attn_k.weight", matrices, s.dim, kv_dim, fan_in(s.dim), 0.0f});
    plan.push_back({p + "attn_v.weight", more_bits(l) ? TensorType::Q6_K : matrices, s.dim, kv_dim, fan_in(s.dim), 0.0f});
    plan.push_back({p + "attn_output.weight", matrices, s.dim, s.dim, fan_in(s.dim), 0.0f});
    plan.push_back({p + "ffn_norm.weight", TensorType::F32, s.dim, 1, 0.1f, 1.0f});
    plan.push_back({p + "ffn_gate.weight", matrices, s.dim, s.ffn_dim, fan_in(s.dim), 0.0f});
    plan.push_back({p + "ffn_up.weight", matrices, s.dim, s.ffn_dim, fan_in(s.dim), 0.0f});
    plan.push_back({p + "ffn_down.weight", more_bits(l) ? TensorType::Q6_K : matrices, s.ffn_dim, s.dim,
                    fan_in(s.ffn_dim), 0.0f});
  }
  plan.push_back({"output_norm.weight", TensorType::F32, s.dim, 1, 0.1f, 1.0f});
  if (!s.tied_embeddings) plan.push_back({"output.weight", output_type, s.dim, vocab, 2.0f * fan_in(s.dim), 0.0f});

  for (const TensorPlan& t : plan) {
    if (t.cols % type_traits(t.type).block_elements != 0)
      fail("make-model: %s rows of %lld elements do not fit %s blocks of %u", t.name.c_str(),
           static_cast<long long>(t.cols), type_name(t.type), type_traits(t.type).block_elements);
    if (t.rows == 1) writer.add_tensor(t.name, t.type, {static_cast<uint64_t>(t.cols)});
    else writer.add_tensor(t.name, t.type, {static_cast<uint64_t>(t.cols), static_cast<uint64_t>(t.rows)});
  }
  writer.begin_data();

  for (size_t index = 0; index < plan.size(); ++index) {
    const TensorPlan& t = plan[index];
    const uint64_t bytes_per_row = row_bytes(t.type, static_cast<uint64_t>(t.cols));
    const int64_t rows_per_chunk = std::max<int64_t>(1, (8 << 20) / (t.cols * 4));
    std::vector<uint8_t> chunk(static_cast<size_t>(bytes_per_row * std::min(rows_per_chunk, t.rows)));
    const uint64_t tensor_seed = mix(options.seed * 0x100000001B3ull + index);
    for (int64_t first = 0; first < t.rows; first += rows_per_chunk) {
      const int64_t count = std::min(rows_per_chunk, t.rows - first);
      pool.parallel_for(count, 4, [&](int64_t begin, int64_t end) {
        std::vector<float> values(static_cast<size_t>(t.cols));
        for (int64_t r = begin; r < end; ++r) {
          fill_row(tensor_seed ^ mix(static_cast<uint64_t>(first + r)), t.amplitude, t.offset, values.data(), t.cols);
          quantize_row(t.type, values.data(), chunk.data() + static_cast<uint64_t>(r) * bytes_per_row, t.cols);
        }
      });
      writer.write_data(chunk.data(), static_cast<size_t>(bytes_per_row * static_cast<uint64_t>(count)));
    }
  }
  writer.finish();
  struct stat info {};
  ::stat(options.output_path.c_str(), &info);
  return static_cast<uint64_t>(info.st_size);
}

}  // namespace

uint64_t make_model(const MakeModelOptions& options, ThreadPool& pool) {
  try {
    return write_model(options, pool);
  } catch (const Error&) {
    ::unlink(options.output_path.c_str());  // no half-written model left behind
    throw;
  }
}

}  // namespace fi
