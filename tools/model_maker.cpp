#include "tools/model_maker.h"

#include <algorithm>
#include <cmath>
#include <strings.h>
#include <utility>
#include <vector>

#include "host/kernels/quant.h"
#include "io/error.h"
#include "host/model/model.h"
#include "io/file.h"
#include "io/gguf.h"

namespace fi {

namespace {

struct TensorPlan {
  std::string name;
  TensorType type;
  int64_t cols, rows;
  int64_t slices;   // experts of a stacked tensor, else 1
  float amplitude;  // weights are uniform in [-amplitude, amplitude] (+ offset for norms)
  float offset;
  std::vector<float> row_scales;  // per row (the router's skew); empty: 1
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

// Each scheme's name, the type of most of its matrices and llama.cpp's general.file_type.
struct SchemeInfo {
  const char* name;
  WeightScheme scheme;
  TensorType base;
  uint32_t file_type;
};
constexpr SchemeInfo kSchemes[] = {
    {"f32", WeightScheme::F32, TensorType::F32, 0},          {"f16", WeightScheme::F16, TensorType::F16, 1},
    {"q8_0", WeightScheme::Q8_0, TensorType::Q8_0, 7},       {"q4_0", WeightScheme::Q4_0, TensorType::Q4_0, 2},
    {"q4_1", WeightScheme::Q4_1, TensorType::Q4_1, 3},       {"q5_0", WeightScheme::Q5_0, TensorType::Q5_0, 8},
    {"q5_1", WeightScheme::Q5_1, TensorType::Q5_1, 9},       {"q2_k", WeightScheme::Q2_K, TensorType::Q2_K, 10},
    {"q3_k_s", WeightScheme::Q3_K_S, TensorType::Q3_K, 11},  {"q3_k_m", WeightScheme::Q3_K_M, TensorType::Q3_K, 12},
    {"q3_k_l", WeightScheme::Q3_K_L, TensorType::Q3_K, 13},  {"q4_k", WeightScheme::Q4_K, TensorType::Q4_K, 14},
    {"q4_k_m", WeightScheme::Q4_K_M, TensorType::Q4_K, 15},  {"q5_k_m", WeightScheme::Q5_K_M, TensorType::Q5_K, 17},
    {"q6_k", WeightScheme::Q6_K, TensorType::Q6_K, 18},      {"iq4_nl", WeightScheme::IQ4_NL, TensorType::IQ4_NL, 25},
    {"iq4_xs", WeightScheme::IQ4_XS, TensorType::IQ4_XS, 30},
};

const SchemeInfo& scheme_info(WeightScheme scheme) {
  for (const SchemeInfo& info : kSchemes)
    if (info.scheme == scheme) return info;
  fail("internal: weight scheme %d has no entry", static_cast<int>(scheme));
}

// llama.cpp's substitutes for a 256-element block type whose blocks do not divide the rows (F16
// where the substitute's do not either). The 32-element block types have none: llama.cpp refuses
// such a tensor, and so does write_model.
TensorType fallback_type(TensorType type, int64_t cols) {
  if (cols % type_traits(type).block_elements == 0) return type;
  TensorType substitute = type;
  switch (type) {
    case TensorType::Q2_K: case TensorType::Q3_K: substitute = TensorType::Q4_0; break;
    case TensorType::Q4_K: substitute = TensorType::Q5_0; break;
    case TensorType::Q5_K: substitute = TensorType::Q5_1; break;
    case TensorType::Q6_K: substitute = TensorType::Q8_0; break;
    case TensorType::IQ4_XS: substitute = TensorType::IQ4_NL; break;
    default: return type;
  }
  return cols % type_traits(substitute).block_elements == 0 ? substitute : TensorType::F16;
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

namespace {

struct Preset {
  const char* name;
  ModelShape shape;
};

ModelShape shaped(ModelShape shape, const char* arch, int64_t head_dim, RopeScaling scaling = {}) {
  shape.arch = arch;
  shape.head_dim = head_dim;
  shape.rope_scaling = scaling;
  return shape;
}

ModelShape with_experts(ModelShape shape, int64_t experts, int64_t used, int64_t expert_ffn, double skew = 0.0) {
  shape.n_experts = experts;
  shape.n_experts_used = used;
  shape.expert_ffn_dim = expert_ffn;
  shape.router_skew = skew;
  return shape;
}

// Llama 3.1's published RoPE scaling (Llama 3.2 uses a factor of 32).
RopeScaling llama3_scaling(double factor) { return {RopeScaling::Type::Llama3, factor, 8192, 1, 4}; }

const std::vector<Preset>& presets() {
  static const std::vector<Preset> list = {
      {"micro", {32, 1, 2, 1, 64, 128, 0, 10000.0, false}},  // fuzzing seeds
      {"tiny", {256, 4, 8, 4, 768, 2048, 0, 10000.0, false}},
      {"1b", {2048, 16, 32, 8, 8192, 8192, 0, 500000.0, true}},
      {"7b", {4096, 32, 32, 32, 11008, 4096, 0, 10000.0, false}},
      {"13b", {5120, 40, 40, 40, 13824, 4096, 0, 10000.0, false}},
      {"70b", {8192, 80, 64, 8, 28672, 4096, 0, 10000.0, false}},
      {"llama3.2-1b", shaped({2048, 16, 32, 8, 8192, 131072, 0, 500000.0, true}, "llama", 0, llama3_scaling(32))},
      {"llama3.1-8b", shaped({4096, 32, 32, 8, 14336, 131072, 0, 500000.0, false}, "llama", 0, llama3_scaling(8))},
      {"mistral-nemo-12b", shaped({5120, 40, 32, 8, 14336, 1024000, 0, 1000000.0, false}, "llama", 128)},
      {"qwen2.5-1.5b", shaped({1536, 28, 12, 2, 8960, 32768, 0, 1000000.0, true}, "qwen2", 0)},
      {"qwen2.5-7b", shaped({3584, 28, 28, 4, 18944, 32768, 0, 1000000.0, false}, "qwen2", 0)},
      {"qwen3-1.7b", shaped({2048, 28, 16, 8, 6144, 40960, 0, 1000000.0, true}, "qwen3", 128)},
      {"qwen3-8b", shaped({4096, 36, 32, 8, 12288, 40960, 0, 1000000.0, false}, "qwen3", 128)},
      // Small ones with each family's distinctive features, for tests and the goldens in tests/data:
      // Llama 3.1's frequency factors with a head dimension of its own (as Mistral-Nemo), Qwen2.5's
      // biases, NeoX RoPE and tied output (with linear scaling), Qwen3's Q/K norm and wide heads.
      {"tiny-llama3", shaped({256, 4, 8, 2, 512, 8192, 0, 500000.0, false}, "llama", 64, llama3_scaling(8))},
      {"tiny-qwen2", shaped({256, 4, 8, 2, 512, 4096, 0, 1000000.0, true}, "qwen2", 0,
                            {RopeScaling::Type::Linear, 2.0, 8192, 1, 4})},
      {"tiny-qwen3", shaped({256, 4, 4, 2, 512, 4096, 0, 1000000.0, false}, "qwen3", 128)},
      // Mixture of experts: the published shapes (the vocabulary comes with --vocab), the shapes of
      // the MoE fixtures in ../shared/data, and two more for the goldens in tests/data: many experts
      // with four chosen, one KV head and an expert width the K-quants' 256 does not divide; one
      // expert chosen of eight, no GQA, and such a width again.
      {"qwen3-30b-a3b", with_experts(shaped({2048, 48, 32, 4, 6144, 40960, 0, 1000000.0, false}, "qwen3moe", 128), 128, 8, 768)},
      {"qwen3-235b-a22b", with_experts(shaped({4096, 94, 64, 4, 12288, 40960, 0, 1000000.0, false}, "qwen3moe", 128), 128, 8, 1536)},
      {"mixtral-8x7b", with_experts(shaped({4096, 32, 32, 8, 14336, 32768, 0, 1000000.0, false}, "llama", 0), 8, 2, 14336)},
      {"tiny-qwen3moe", with_experts(shaped({256, 4, 4, 2, 512, 4096, 0, 1000000.0, false}, "qwen3moe", 64), 8, 2, 256, 1.0)},
      {"tiny-mixtral", with_experts(shaped({256, 2, 8, 4, 512, 4096, 0, 10000.0, false}, "llama", 0), 4, 2, 512, 1.0)},
      {"tiny-qwen3moe-wide", with_experts(shaped({256, 3, 8, 1, 512, 4096, 0, 1000000.0, false}, "qwen3moe", 32), 16, 4, 96, 1.0)},
      {"tiny-mixtral-top1", with_experts(shaped({256, 3, 4, 4, 384, 4096, 0, 1000000.0, false}, "llama", 0), 8, 1, 384, 1.0)},
  };
  return list;
}

}  // namespace

std::optional<ModelShape> find_preset(const std::string& name) {
  for (const Preset& preset : presets())
    if (name == preset.name) return preset.shape;
  return std::nullopt;
}

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> list;
    for (const Preset& preset : presets()) list.push_back(preset.name);
    return list;
  }();
  return names;
}

std::string architecture_problem(const std::string& arch) {
  if (find_architecture(arch) || find_architecture(arch, true)) return "";
  return "unknown architecture '" + arch + "' (supported: " + architecture_names() + ")";
}

ModelShape with_architecture(ModelShape shape, const std::string& arch) {
  if (const std::string problem = architecture_problem(arch); !problem.empty()) fail("make-model: %s", problem.c_str());
  shape.arch = arch;
  if ((arch == "qwen3" || arch == "qwen3moe") && shape.head_dim == 0 && shape.n_heads > 0)
    shape.head_dim = 2 * shape.dim / shape.n_heads;
  if (!find_architecture(arch) && shape.n_experts == 0) shape = with_experts(shape, 8, 2, shape.ffn_dim, shape.router_skew);
  return shape;
}

std::optional<TensorTypeOverride> parse_tensor_type_override(const std::string& text, std::string* problem) {
  const size_t equals = text.find('=');
  if (equals == std::string::npos) {
    *problem = "'" + text + "' is not NAME=TYPE (for example ffn_up_exps=q8_0)";
    return std::nullopt;
  }
  const std::string name = text.substr(0, equals), type = text.substr(equals + 1);
  std::optional<Role> role;
  std::string matrices;
  for (size_t r = 0; r < kRoleCount; ++r) {
    const RoleSpec& spec = role_spec(static_cast<Role>(r));
    if (!spec.matrix) continue;
    matrices += (matrices.empty() ? "" : ", ") + std::string(spec.name);
    if (name == spec.name) role = spec.role;
  }
  if (!role) {
    *problem = "'" + name + "' is not a weight matrix's name (" + matrices + ")";
    return std::nullopt;
  }
  std::string types;
  for (TensorType candidate : supported_types()) {
    const std::string candidate_name = type_name(candidate);
    types += (types.empty() ? "" : ", ") + candidate_name;
    if (strcasecmp(candidate_name.c_str(), type.c_str()) == 0) return TensorTypeOverride{*role, candidate};
  }
  *problem = "'" + type + "' is not a tensor type (" + types + ")";
  return std::nullopt;
}

std::optional<WeightScheme> parse_weight_scheme(const std::string& name) {
  for (const SchemeInfo& info : kSchemes)
    if (name == info.name) return info.scheme;
  return std::nullopt;
}

const char* weight_scheme_name(WeightScheme scheme) { return scheme_info(scheme).name; }

const std::vector<std::string>& weight_scheme_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> list;
    for (const SchemeInfo& info : kSchemes) list.push_back(info.name);
    return list;
  }();
  return names;
}

TensorType scheme_tensor_type(WeightScheme scheme, Role role, int64_t layer, const ModelShape& shape) {
  const RoleSpec& spec = role_spec(role);
  // llama.cpp never quantizes the router.
  if (!spec.matrix || role == Role::FfnGateInp) return TensorType::F32;
  const TensorType base = scheme_info(scheme).base;
  if (is_float_type(base)) return base;
  using S = WeightScheme;
  // The schemes that predate the mixes keep what they always wrote: a tied embedding in the matrix
  // type, no 70B rule.
  const bool original = scheme == S::Q8_0 || scheme == S::Q4_0 || scheme == S::Q4_K || scheme == S::Q4_K_M || scheme == S::Q6_K;
  const int64_t n = shape.n_layers, gqa = shape.n_heads / shape.n_kv_heads;
  auto more_bits = [n](int64_t i) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; };
  const TensorType head = base == TensorType::Q8_0 ? TensorType::Q8_0 : TensorType::Q6_K;
  TensorType type = base;
  switch (role) {
    case Role::Output: type = head; break;
    case Role::TokenEmbedding:
      if (shape.tied_embeddings && !original) type = head;
      break;
    case Role::AttnV:
      if (scheme == S::Q2_K) type = gqa >= 4 ? TensorType::Q4_K : TensorType::Q3_K;
      else if (scheme == S::Q3_K_M) type = layer < 2 ? TensorType::Q5_K : TensorType::Q4_K;
      else if (scheme == S::Q3_K_L) type = TensorType::Q5_K;
      else if ((scheme == S::IQ4_NL || scheme == S::IQ4_XS) && gqa >= 4) type = TensorType::Q5_K;
      else if ((scheme == S::Q4_K_M || scheme == S::Q5_K_M) && more_bits(layer)) type = TensorType::Q6_K;
      // Llama-2-70B's 8 query heads share each V head: its V matrices are small, worth more bits.
      if (!original && shape.arch == "llama" && n == 80 && gqa > 1 && (type == TensorType::Q3_K || type == TensorType::Q4_K))
        type = TensorType::Q5_K;
      break;
    case Role::FfnDown:
    case Role::FfnDownExps:  // llama.cpp's rules for ffn_down cover the experts' too
      if (scheme == S::Q2_K) type = TensorType::Q3_K;
      else if (scheme == S::Q3_K_M) type = layer < n / 16 ? TensorType::Q5_K : TensorType::Q4_K;
      else if (scheme == S::Q3_K_L) type = TensorType::Q5_K;
      else if ((scheme == S::Q4_K_M || scheme == S::Q5_K_M) && more_bits(layer)) type = TensorType::Q6_K;
      else if ((scheme == S::IQ4_NL || scheme == S::IQ4_XS) && layer < n / 8) type = TensorType::Q5_K;
      break;
    case Role::AttnOutput:
      if (scheme == S::Q2_K) type = TensorType::Q3_K;
      else if (scheme == S::Q3_K_M) type = TensorType::Q4_K;
      else if (scheme == S::Q3_K_L) type = TensorType::Q5_K;
      break;
    default: break;
  }
  ModelConfig config;
  config.dim = shape.dim;
  config.n_heads = shape.n_heads;
  config.n_kv_heads = shape.n_kv_heads;
  config.head_dim = shape.head_dim > 0 ? shape.head_dim : shape.dim / shape.n_heads;
  config.ffn_dim = shape.ffn_dim;
  config.expert_ffn_dim = shape.expert_ffn_dim;
  config.vocab = 1;
  // Every scheme falls back where its blocks do not divide the rows (no file it wrote before changes:
  // such a shape could not be written).
  return fallback_type(type, static_cast<int64_t>(config.extent(spec.cols)));
}

namespace {

// What a fresh model's tensor of `role` holds: weights uniform with the fan-in's scale, norms near
// one, biases small.
void amplitude_of(const RoleSpec& spec, uint64_t cols, float* amplitude, float* offset) {
  const auto fan_in = static_cast<float>(std::sqrt(3.0 / static_cast<double>(cols)));
  *offset = 0.0f;
  if (spec.matrix) *amplitude = spec.role == Role::TokenEmbedding ? 1.0f : spec.role == Role::Output ? 2.0f * fan_in : fan_in;
  else if (std::string(spec.suffix) == "bias") *amplitude = 0.5f;
  else {
    *amplitude = 0.1f;
    *offset = 1.0f;
  }
}

void write_model(const MakeModelOptions& options, const std::string& path, ThreadPool& pool) {
  const ModelShape& s = options.shape;
  const Architecture* arch = find_architecture(s.arch, s.n_experts > 0);
  if (!arch && find_architecture(s.arch)) fail("make-model: a %s model has no experts", s.arch.c_str());
  if (!arch) fail("make-model: unknown architecture '%s' (supported: %s)", s.arch.c_str(), architecture_names().c_str());
  if (s.dim <= 0 || s.n_heads <= 0 || s.n_kv_heads <= 0 || s.n_heads % s.n_kv_heads != 0 || s.n_layers <= 0 ||
      s.ffn_dim <= 0 || (s.head_dim == 0 && s.dim % s.n_heads != 0))
    fail("make-model: inconsistent shape (dim %lld, heads %lld, kv heads %lld)", static_cast<long long>(s.dim),
         static_cast<long long>(s.n_heads), static_cast<long long>(s.n_kv_heads));
  if (s.n_experts < 0 || s.n_experts > kMaxExperts || (s.n_experts > 0 && (s.n_experts_used < 1 || s.n_experts_used > s.n_experts ||
                                                                             s.expert_ffn_dim <= 0)))
    fail("make-model: inconsistent experts (%lld, %lld chosen, width %lld)", static_cast<long long>(s.n_experts),
         static_cast<long long>(s.n_experts_used), static_cast<long long>(s.expert_ffn_dim));
  if (!(s.router_skew >= 0.0 && s.router_skew <= 16.0))
    fail("make-model: a router skew of %g is outside 0..16", s.router_skew);
  if (s.biases && arch->presence(Role::AttnQBias) == Presence::Absent)
    fail("make-model: a %s model has no Q/K/V biases", arch->name);
  const int64_t head_dim = s.head_dim > 0 ? s.head_dim : s.dim / s.n_heads;
  if (head_dim % 2 != 0) fail("make-model: the head dimension %lld is odd", static_cast<long long>(head_dim));

  const std::string p = std::string(arch->name) + ".";
  GgufWriter writer(path);
  writer.add_string("general.architecture", arch->name);
  writer.add_string("general.name", std::string("flexinfer-random-") + arch->name);
  writer.add_uint32("general.file_type", scheme_info(options.scheme).file_type);
  if (options.scheme != WeightScheme::F32 && options.scheme != WeightScheme::F16)
    writer.add_uint32("general.quantization_version", 2);
  writer.add_uint32(p + "context_length", static_cast<uint32_t>(s.context));
  writer.add_uint32(p + "embedding_length", static_cast<uint32_t>(s.dim));
  writer.add_uint32(p + "block_count", static_cast<uint32_t>(s.n_layers));
  // Mixtral's feed_forward_length is its experts' width; Qwen3-MoE states the experts' apart.
  const bool ffn_is_experts = arch->has_experts() && std::string(arch->expert_ffn_key) == "feed_forward_length";
  writer.add_uint32(p + "feed_forward_length", static_cast<uint32_t>(ffn_is_experts ? s.expert_ffn_dim : s.ffn_dim));
  if (arch->has_experts()) {
    writer.add_uint32(p + "expert_count", static_cast<uint32_t>(s.n_experts));
    writer.add_uint32(p + "expert_used_count", static_cast<uint32_t>(s.n_experts_used));
    if (!ffn_is_experts) writer.add_uint32(p + arch->expert_ffn_key, static_cast<uint32_t>(s.expert_ffn_dim));
  }
  writer.add_uint32(p + "rope.dimension_count", static_cast<uint32_t>(s.rope_dim > 0 ? s.rope_dim : head_dim));
  writer.add_uint32(p + "attention.head_count", static_cast<uint32_t>(s.n_heads));
  writer.add_uint32(p + "attention.head_count_kv", static_cast<uint32_t>(s.n_kv_heads));
  if (s.head_dim > 0) {
    writer.add_uint32(p + "attention.key_length", static_cast<uint32_t>(head_dim));
    writer.add_uint32(p + "attention.value_length", static_cast<uint32_t>(head_dim));
  }
  writer.add_float32(p + "attention.layer_norm_rms_epsilon", 1e-5f);
  writer.add_float32(p + "rope.freq_base", static_cast<float>(s.rope_base));
  if (s.rope_scaling.type == RopeScaling::Type::Linear) {
    writer.add_string(p + "rope.scaling.type", "linear");
    writer.add_float32(p + "rope.scaling.factor", static_cast<float>(s.rope_scaling.factor));
  }

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

  ModelConfig config;
  config.arch = arch;
  config.dim = s.dim;
  config.n_layers = s.n_layers;
  config.n_heads = s.n_heads;
  config.n_kv_heads = s.n_kv_heads;
  config.head_dim = head_dim;
  config.ffn_dim = s.ffn_dim;
  config.n_experts = s.n_experts;
  config.n_experts_used = s.n_experts_used;
  config.expert_ffn_dim = s.expert_ffn_dim;
  config.vocab = vocab;
  config.rope_dim = s.rope_dim > 0 ? s.rope_dim : head_dim;
  config.rope_base = s.rope_base;

  auto wanted = [&](Role role) {
    switch (arch->presence(role)) {
      case Presence::Required: return true;
      case Presence::Absent: return false;
      case Presence::Optional: break;
    }
    if (role == Role::Output) return !s.tied_embeddings;
    if (role == Role::RopeFrequencies) return s.rope_scaling.type == RopeScaling::Type::Llama3;
    if (role == Role::AttnQBias || role == Role::AttnKBias || role == Role::AttnVBias) return s.biases;
    return false;
  };
  // With experts, the projections that end a residual branch start at 1/sqrt(2 x layers) of the
  // usual amplitude (GPT-2's initialisation). Unscaled, every layer's attention blends the tokens'
  // states further, until deep routers see nearly one state and choose the same few experts for
  // every token; scaled, each token keeps a state of its own, so an unskewed router spreads its
  // choices as random routing would. Dense files keep the weights their goldens were made from.
  const auto residual_scale = static_cast<float>(1.0 / std::sqrt(2.0 * static_cast<double>(s.n_layers)));
  std::vector<TensorPlan> plan;
  auto add = [&](Role role, int64_t layer) {
    if (!wanted(role)) return;
    const RoleSpec& spec = role_spec(role);
    const uint64_t cols = config.extent(spec.cols), rows = config.extent(spec.rows), slices = config.extent(spec.slices);
    TensorType type = scheme_tensor_type(options.scheme, role, layer, s);
    for (const TensorTypeOverride& chosen : options.tensor_types)
      if (chosen.role == role) type = fallback_type(chosen.type, static_cast<int64_t>(cols));
    float amplitude = 0, offset = 0;
    amplitude_of(spec, cols, &amplitude, &offset);
    if (arch->has_experts() && (role == Role::AttnOutput || role == Role::FfnDown || role == Role::FfnDownExps))
      amplitude *= residual_scale;
    std::vector<float> row_scales;
    if (role == Role::FfnGateInp && s.router_skew > 0.0)
      for (uint64_t expert = 0; expert < rows; ++expert) {
        const float unit = static_cast<float>(mix(options.seed ^ mix(expert)) >> 40) * (1.0f / 16777216.0f);
        row_scales.push_back(std::exp(static_cast<float>(s.router_skew) * unit));
      }
    plan.push_back({tensor_name(role, layer), type, static_cast<int64_t>(cols), static_cast<int64_t>(rows),
                    static_cast<int64_t>(slices), amplitude, offset, std::move(row_scales)});
  };
  // llama.cpp's writers' order: the embedding, the layers, the head.
  add(Role::TokenEmbedding, -1);
  add(Role::RopeFrequencies, -1);
  for (int64_t l = 0; l < s.n_layers; ++l)
    for (size_t r = 0; r < kRoleCount; ++r)
      if (is_layer_role(static_cast<Role>(r))) add(static_cast<Role>(r), l);
  add(Role::OutputNorm, -1);
  add(Role::Output, -1);

  for (const TensorTypeOverride& chosen : options.tensor_types)
    if (std::none_of(plan.begin(), plan.end(), [&](const TensorPlan& t) { return parse_tensor_name(t.name)->role == chosen.role; }))
      fail("make-model: this model has no %s tensors to write in %s", role_spec(chosen.role).name, type_name(chosen.type));
  for (const TensorPlan& t : plan) {
    if (t.cols % type_traits(t.type).block_elements != 0)
      fail("make-model: %s rows of %lld elements do not fit %s blocks of %u", t.name.c_str(),
           static_cast<long long>(t.cols), type_name(t.type), type_traits(t.type).block_elements);
    const auto cols = static_cast<uint64_t>(t.cols), rows = static_cast<uint64_t>(t.rows);
    if (t.slices > 1) writer.add_tensor(t.name, t.type, {cols, rows, static_cast<uint64_t>(t.slices)});
    else if (t.rows == 1) writer.add_tensor(t.name, t.type, {cols});
    else writer.add_tensor(t.name, t.type, {cols, rows});
  }
  writer.begin_data();

  for (size_t index = 0; index < plan.size(); ++index) {
    const TensorPlan& t = plan[index];
    const uint64_t bytes_per_row = row_bytes(t.type, static_cast<uint64_t>(t.cols));
    const int64_t rows = t.rows * t.slices;  // a stacked tensor is written as one matrix, expert after expert
    const int64_t rows_per_chunk = std::max<int64_t>(1, (8 << 20) / (t.cols * 4));
    std::vector<uint8_t> chunk(static_cast<size_t>(bytes_per_row * std::min(rows_per_chunk, rows)));
    const uint64_t tensor_seed = mix(options.seed * 0x100000001B3ull + index);
    if (t.name == tensor_name(Role::RopeFrequencies)) {
      const std::vector<float> factors = llama3_frequency_factors(config.rope_dim, s.rope_base, s.rope_scaling);
      writer.write_data(factors.data(), factors.size() * sizeof(float));
      continue;
    }
    for (int64_t first = 0; first < rows; first += rows_per_chunk) {
      if (options.stop && options.stop->load()) fail("make-model: interrupted; the unfinished file is removed");
      const int64_t count = std::min(rows_per_chunk, rows - first);
      pool.parallel_for(count, 4, [&](int64_t begin, int64_t end) {
        std::vector<float> values(static_cast<size_t>(t.cols));
        for (int64_t r = begin; r < end; ++r) {
          const float scale = t.row_scales.empty() ? 1.0f : t.row_scales[static_cast<size_t>(first + r)];
          fill_row(tensor_seed ^ mix(static_cast<uint64_t>(first + r)), t.amplitude * scale, t.offset, values.data(), t.cols);
          quantize_row(t.type, values.data(), chunk.data() + static_cast<uint64_t>(r) * bytes_per_row, t.cols);
        }
      });
      writer.write_data(chunk.data(), static_cast<size_t>(bytes_per_row * static_cast<uint64_t>(count)));
    }
  }
  writer.finish();
}

}  // namespace

uint64_t make_model(const MakeModelOptions& options, ThreadPool& pool) {
  UnfinishedFile output(options.output_path);
  write_model(options, output.writing_path(), pool);
  return output.complete();
}

}  // namespace fi
