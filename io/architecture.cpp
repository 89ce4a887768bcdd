#include "io/architecture.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "io/error.h"

namespace fi {

namespace {

using enum Role;

// The one place tensor names are spelled.
constexpr RoleSpec kRoles[] = {
    {Role::TokenEmbedding, "token_embd", "weight", false, true, Dim::Model, Dim::Vocab, RoleGroup::Embedding, -1},
    {Role::OutputNorm, "output_norm", "weight", false, false, Dim::Model, Dim::One, RoleGroup::Output, -1},
    {Role::Output, "output", "weight", false, true, Dim::Model, Dim::Vocab, RoleGroup::Output, -1},
    {Role::RopeFrequencies, "rope_freqs", "weight", false, false, Dim::RopePairs, Dim::One, RoleGroup::Rope, -1},
    {Role::AttnNorm, "attn_norm", "weight", true, false, Dim::Model, Dim::One, RoleGroup::Norm, -1},
    {Role::AttnQ, "attn_q", "weight", true, true, Dim::Model, Dim::QueryWidth, RoleGroup::Attention, 2},
    {Role::AttnK, "attn_k", "weight", true, true, Dim::Model, Dim::KvWidth, RoleGroup::Attention, 0},
    {Role::AttnV, "attn_v", "weight", true, true, Dim::Model, Dim::KvWidth, RoleGroup::Attention, 1},
    {Role::AttnQBias, "attn_q", "bias", true, false, Dim::QueryWidth, Dim::One, RoleGroup::Attention, -1},
    {Role::AttnKBias, "attn_k", "bias", true, false, Dim::KvWidth, Dim::One, RoleGroup::Attention, -1},
    {Role::AttnVBias, "attn_v", "bias", true, false, Dim::KvWidth, Dim::One, RoleGroup::Attention, -1},
    {Role::AttnQNorm, "attn_q_norm", "weight", true, false, Dim::HeadDim, Dim::One, RoleGroup::Norm, -1},
    {Role::AttnKNorm, "attn_k_norm", "weight", true, false, Dim::HeadDim, Dim::One, RoleGroup::Norm, -1},
    {Role::AttnOutput, "attn_output", "weight", true, true, Dim::QueryWidth, Dim::Model, RoleGroup::Attention, 3},
    {Role::AttnOutputBias, "attn_output", "bias", true, false, Dim::Model, Dim::One, RoleGroup::Attention, -1},
    {Role::FfnNorm, "ffn_norm", "weight", true, false, Dim::Model, Dim::One, RoleGroup::Norm, -1},
    {Role::FfnGate, "ffn_gate", "weight", true, true, Dim::Model, Dim::Ffn, RoleGroup::Ffn, 5},
    {Role::FfnUp, "ffn_up", "weight", true, true, Dim::Model, Dim::Ffn, RoleGroup::Ffn, 6},
    {Role::FfnDown, "ffn_down", "weight", true, true, Dim::Ffn, Dim::Model, RoleGroup::Ffn, 7},
    {Role::FfnGateBias, "ffn_gate", "bias", true, false, Dim::Ffn, Dim::One, RoleGroup::Ffn, -1},
    {Role::FfnUpBias, "ffn_up", "bias", true, false, Dim::Ffn, Dim::One, RoleGroup::Ffn, -1},
    {Role::FfnDownBias, "ffn_down", "bias", true, false, Dim::Model, Dim::One, RoleGroup::Ffn, -1},
    // The router is small and needed by every token: resident right after attention.
    {Role::FfnGateInp, "ffn_gate_inp", "weight", true, true, Dim::Model, Dim::Experts, RoleGroup::Ffn, 4},
    {Role::FfnGateExps, "ffn_gate_exps", "weight", true, true, Dim::Model, Dim::ExpertFfn, RoleGroup::Ffn, 8, Dim::Experts},
    {Role::FfnUpExps, "ffn_up_exps", "weight", true, true, Dim::Model, Dim::ExpertFfn, RoleGroup::Ffn, 9, Dim::Experts},
    {Role::FfnDownExps, "ffn_down_exps", "weight", true, true, Dim::ExpertFfn, Dim::Model, RoleGroup::Ffn, 10, Dim::Experts},
};
static_assert(std::size(kRoles) == kRoleCount, "one row per role");
constexpr bool rows_in_role_order() {
  for (size_t i = 0; i < kRoleCount; ++i)
    if (index_of(kRoles[i].role) != i) return false;
  return true;
}
static_assert(rows_in_role_order(), "the table is indexed by role");

Architecture describe(const char* name, RopeStyle rope_style, std::initializer_list<std::initializer_list<Role>> required,
                      std::initializer_list<Role> optional, const char* expert_ffn_key = nullptr) {
  Architecture arch{name, rope_style, FfnActivation::SwiGlu, {}, expert_ffn_key};
  arch.roles.fill(Presence::Absent);
  for (const auto& group : required)
    for (Role role : group) arch.roles[index_of(role)] = Presence::Required;
  for (Role role : optional) arch.roles[index_of(role)] = Presence::Optional;
  return arch;
}

// What every architecture here shares: token embedding, final norm, an output head that may be
// the embedding (tied), pre-norm attention and a SwiGLU FFN, dense or of experts.
constexpr std::initializer_list<Role> kCore = {TokenEmbedding, OutputNorm, AttnNorm, AttnQ, AttnK, AttnV, AttnOutput, FfnNorm};
constexpr std::initializer_list<Role> kDenseFfn = {FfnGate, FfnUp, FfnDown};
constexpr std::initializer_list<Role> kExperts = {FfnGateInp, FfnGateExps, FfnUpExps, FfnDownExps};

const std::vector<const Architecture*>& all_architectures() {
  // Llama 2/3.x, Mistral, CodeLlama, TinyLlama: adjacent-pair RoPE, optional frequency factors
  // (Llama 3.1) and the biases llama.cpp accepts for this architecture.
  static const Architecture llama =
      describe("llama", RopeStyle::Adjacent, {kCore, kDenseFfn},
               {Role::Output, RopeFrequencies, AttnQBias, AttnKBias, AttnVBias, AttnOutputBias, FfnGateBias, FfnUpBias,
                FfnDownBias});
  // Mixtral: llama with experts instead of the dense FFN; its feed_forward_length is an expert's.
  static const Architecture mixtral =
      describe("llama", RopeStyle::Adjacent, {kCore, kExperts},
               {Role::Output, RopeFrequencies, AttnQBias, AttnKBias, AttnVBias, AttnOutputBias}, "feed_forward_length");
  // Qwen2 / Qwen2.5: Q/K/V biases, NeoX RoPE, tied embeddings in the small models.
  static const Architecture qwen2 =
      describe("qwen2", RopeStyle::Neox, {kCore, kDenseFfn, {AttnQBias, AttnKBias, AttnVBias}}, {Role::Output});
  // Qwen3 dense: per-head RMSNorm of Q and K before RoPE, head_dim from key_length, NeoX RoPE.
  static const Architecture qwen3 = describe("qwen3", RopeStyle::Neox, {kCore, kDenseFfn, {AttnQNorm, AttnKNorm}},
                                             {Role::Output, AttnQBias, AttnKBias, AttnVBias});
  // Qwen3 MoE (Qwen3-30B-A3B, 235B-A22B): qwen3's attention, experts of their own FFN width.
  static const Architecture qwen3moe =
      describe("qwen3moe", RopeStyle::Neox, {kCore, kExperts, {AttnQNorm, AttnKNorm}},
               {Role::Output, AttnQBias, AttnKBias, AttnVBias}, "expert_feed_forward_length");
  static const std::vector<const Architecture*> list = {&llama, &mixtral, &qwen2, &qwen3, &qwen3moe};
  return list;
}

int64_t require_count(const GgufFile& file, const std::string& key, int64_t low, int64_t high) {
  const auto value = file.get_uint(key);
  if (!value) fail("%s: missing metadata '%s'", file.path().c_str(), key.c_str());
  if (*value < static_cast<uint64_t>(low) || *value > static_cast<uint64_t>(high))
    fail("%s: metadata '%s' = %llu is outside %lld..%lld", file.path().c_str(), key.c_str(),
         static_cast<unsigned long long>(*value), static_cast<long long>(low), static_cast<long long>(high));
  return static_cast<int64_t>(*value);
}

int64_t optional_count(const GgufFile& file, const std::string& key, int64_t fallback, int64_t low, int64_t high) {
  return file.find(key) ? require_count(file, key, low, high) : fallback;
}

[[noreturn]] void unsupported(const GgufFile& file, const std::string& what) {
  fail("%s: %s is not supported by flexinfer", file.path().c_str(), what.c_str());
}

// Metadata that changes the arithmetic in ways this engine does not implement: refused, since
// ignoring it would give wrong results.
void refuse_unimplemented(const GgufFile& file, const std::string& p) {
  auto number = [&](const char* key) { return file.get_float(p + key); };
  if (const auto window = file.get_uint(p + "attention.sliding_window"); window && *window > 0)
    unsupported(file, strprintf("sliding-window attention (%sattention.sliding_window = %llu)", p.c_str(),
                                static_cast<unsigned long long>(*window)));
  if (file.find(p + "attention.sliding_window_pattern"))
    unsupported(file, "sliding-window attention (" + p + "attention.sliding_window_pattern)");
  if (file.find(p + "expert_shared_count") || file.find(p + "expert_shared_feed_forward_length"))
    unsupported(file, "shared experts (" + p + "expert_shared_count)");
  if (const auto scale = number("expert_weights_scale"); scale && *scale != 1.0 && *scale != 0.0)
    unsupported(file, strprintf("%sexpert_weights_scale = %g", p.c_str(), *scale));
  if (const auto gating = file.get_uint(p + "expert_gating_func"); gating && *gating != 1)
    unsupported(file, strprintf("expert gating function %llu (only softmax, 1)", static_cast<unsigned long long>(*gating)));
  for (const char* key : {"logit_scale", "embedding_scale", "residual_scale"})
    if (const auto value = number(key); value && *value != 1.0 && *value != 0.0)
      unsupported(file, strprintf("%s%s = %g", p.c_str(), key, *value));
  for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping", "attention.clamp_kqv",
                          "attention.max_alibi_bias"})
    if (const auto value = number(key); value && *value != 0.0)
      unsupported(file, strprintf("%s%s = %g", p.c_str(), key, *value));
  if (const auto causal = file.get_bool(p + "attention.causal"); causal && !*causal)
    unsupported(file, "non-causal attention (" + p + "attention.causal = false)");
  if (const auto pooling = file.get_uint(p + "pooling_type"); pooling && *pooling != 0)
    unsupported(file, "an embedding model (" + p + "pooling_type)");
  if (file.find(p + "rope.dimension_sections")) unsupported(file, "multimodal RoPE (" + p + "rope.dimension_sections)");
  if (const auto value = number("rope.scaling.attn_factor"); value && *value != 1.0 && *value != 0.0)
    unsupported(file, strprintf("%srope.scaling.attn_factor = %g", p.c_str(), *value));
  if (file.find(p + "attention.layer_norm_epsilon") && !file.find(p + "attention.layer_norm_rms_epsilon"))
    unsupported(file, "LayerNorm (" + p + "attention.layer_norm_epsilon without an RMS epsilon)");
}

RopeScaling read_rope_scaling(const GgufFile& file, const std::string& p) {
  RopeScaling scaling;
  const std::string type = file.get_string(p + "rope.scaling.type").value_or("none");
  auto positive = [&](const std::string& key, double fallback) {
    const double value = file.get_float(key).value_or(fallback);
    if (!(value > 0.0 && value < 1e6)) fail("%s: metadata '%s' = %g must be positive", file.path().c_str(), key.c_str(), value);
    return value;
  };
  if (type == "none" || type == "linear") {
    // As llama.cpp reads it: the factor applies whatever the type says (0 or absent: none), under
    // its current key or the old one.
    const std::string key = file.find(p + "rope.scaling.factor") ? p + "rope.scaling.factor" : p + "rope.scale_linear";
    const double factor = file.get_float(key).value_or(0.0);
    if (factor != 0.0) {
      scaling.type = RopeScaling::Type::Linear;
      scaling.factor = positive(key, 1.0);
    }
  } else if (type == "llama3") {
    // Published defaults of Llama 3.1's rope_scaling, where a writer left a value out.
    scaling.type = RopeScaling::Type::Llama3;
    scaling.factor = positive(p + "rope.scaling.factor", 8.0);
    scaling.original_context = positive(p + "rope.scaling.original_context_length", 8192.0);
    scaling.low_frequency_factor = positive(p + "rope.scaling.low_freq_factor", 1.0);
    scaling.high_frequency_factor = positive(p + "rope.scaling.high_freq_factor", 4.0);
    if (scaling.high_frequency_factor <= scaling.low_frequency_factor)
      fail("%s: llama3 RoPE scaling needs high_freq_factor > low_freq_factor", file.path().c_str());
  } else {
    unsupported(file, "RoPE scaling type '" + type + "' (supported: none, linear, llama3)");
  }
  return scaling;
}

// Experts one tensor each are not read in place: they need not lie in order, so they are
// refused by name, with the command that stacks them.
void refuse_experts_one_tensor_each(const TensorTable& table, Role stacked, int64_t layer) {
  const std::string first_expert = per_expert_tensor_name(stacked, layer, 0);
  if (table.find(first_expert))
    fail("tensor '%s': this file stores each expert as a tensor of its own, as conversions before llama.cpp "
         "stacked them did; stack them once with 'flexinfer stack-experts MODEL.gguf -o NEW.gguf'",
         first_expert.c_str());
}

// A non-negative decimal index, nothing else.
bool parse_index(std::string_view text, int64_t& value) {
  const auto parsed = std::from_chars(text.data(), text.data() + text.size(), value);
  return !text.empty() && parsed.ec == std::errc() && parsed.ptr == text.data() + text.size() && value >= 0;
}

// "ffn_gate" of "ffn_gate_exps": a stacked role's name without its "_exps".
std::string_view per_expert_base(const RoleSpec& stacked) {
  std::string_view base = stacked.name;
  base.remove_suffix(std::string_view("_exps").size());
  return base;
}

}  // namespace

const RoleSpec& role_spec(Role role) { return kRoles[index_of(role)]; }

bool is_layer_role(Role role) { return role_spec(role).per_layer; }

std::string tensor_name(Role role, int64_t layer) {
  const RoleSpec& spec = role_spec(role);
  const std::string base = std::string(spec.name) + "." + spec.suffix;
  if (!spec.per_layer) return base;
  if (layer < 0) fail("internal: %s needs a layer", spec.name);
  return "blk." + std::to_string(layer) + "." + base;
}

std::string per_expert_tensor_name(Role stacked, int64_t layer, int64_t expert) {
  const RoleSpec& spec = role_spec(stacked);
  if (spec.slices != Dim::Experts || layer < 0 || expert < 0) fail("internal: %s has no per-expert tensors", spec.name);
  return "blk." + std::to_string(layer) + "." + std::string(per_expert_base(spec)) + "." + std::to_string(expert) + "." +
         spec.suffix;
}

std::optional<PerExpertTensor> parse_per_expert_tensor_name(std::string_view name) {
  const std::string_view whole = name;
  if (name.substr(0, 4) != "blk.") return std::nullopt;
  name.remove_prefix(4);
  const size_t layer_end = name.find('.');
  const size_t suffix_start = name.rfind('.');
  if (layer_end == std::string_view::npos || suffix_start <= layer_end) return std::nullopt;
  const size_t expert_start = name.rfind('.', suffix_start - 1);
  if (expert_start <= layer_end) return std::nullopt;
  PerExpertTensor found{};
  if (!parse_index(name.substr(0, layer_end), found.layer) ||
      !parse_index(name.substr(expert_start + 1, suffix_start - expert_start - 1), found.expert))
    return std::nullopt;
  const std::string_view base = name.substr(layer_end + 1, expert_start - layer_end - 1);
  const std::string_view suffix = name.substr(suffix_start + 1);
  for (const RoleSpec& spec : kRoles)
    if (spec.slices == Dim::Experts && per_expert_base(spec) == base && spec.suffix == suffix) {
      found.stacked = spec.role;
      // Only the one spelling ("5", not "05"): two names must never stand for one expert.
      if (per_expert_tensor_name(found.stacked, found.layer, found.expert) != whole) return std::nullopt;
      return found;
    }
  return std::nullopt;
}

std::optional<NamedRole> parse_tensor_name(std::string_view name) {
  int64_t layer = -1;
  if (name.substr(0, 4) == "blk.") {
    const size_t dot = name.find('.', 4);
    if (dot == std::string_view::npos) return std::nullopt;
    const auto parsed = std::from_chars(name.data() + 4, name.data() + dot, layer);
    if (parsed.ec != std::errc() || parsed.ptr != name.data() + dot || layer < 0) return std::nullopt;
    name.remove_prefix(dot + 1);
  }
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const std::string_view base = name.substr(0, dot), suffix = name.substr(dot + 1);
  for (const RoleSpec& spec : kRoles)
    if (spec.per_layer == (layer >= 0) && base == spec.name && suffix == spec.suffix) return NamedRole{spec.role, layer};
  return std::nullopt;
}

const std::vector<Role>& preserved_layer_matrices() {
  static const std::vector<Role> roles = [] {
    std::vector<Role> ordered;
    for (const RoleSpec& spec : kRoles)
      if (spec.preservation_rank >= 0) ordered.push_back(spec.role);
    std::sort(ordered.begin(), ordered.end(),
              [](Role a, Role b) { return role_spec(a).preservation_rank < role_spec(b).preservation_rank; });
    return ordered;
  }();
  return roles;
}

bool in_expert_half(Role role) {
  return role == Role::FfnNorm || role == Role::FfnGateInp || role == Role::FfnGateExps || role == Role::FfnUpExps ||
         role == Role::FfnDownExps;
}

const std::vector<const Architecture*>& architectures() { return all_architectures(); }

const Architecture* find_architecture(std::string_view name, bool experts) {
  for (const Architecture* arch : all_architectures())
    if (name == arch->name && experts == arch->has_experts()) return arch;
  return nullptr;
}

std::string architecture_names() {
  std::vector<std::string_view> seen;  // a name with a dense and an expert variant once
  std::string names;
  for (const Architecture* arch : all_architectures()) {
    if (std::find(seen.begin(), seen.end(), arch->name) != seen.end()) continue;
    seen.push_back(arch->name);
    names += std::string(names.empty() ? "" : ", ") + arch->name;
  }
  return names;
}

uint64_t ModelConfig::extent(Dim d) const {
  switch (d) {
    case Dim::One: return 1;
    case Dim::Model: return static_cast<uint64_t>(dim);
    case Dim::QueryWidth: return static_cast<uint64_t>(q_dim());
    case Dim::KvWidth: return static_cast<uint64_t>(kv_dim());
    case Dim::HeadDim: return static_cast<uint64_t>(head_dim);
    case Dim::Ffn: return static_cast<uint64_t>(ffn_dim);
    case Dim::Vocab: return static_cast<uint64_t>(vocab);
    case Dim::RopePairs: return static_cast<uint64_t>(rope_dim / 2);
    case Dim::Experts: return static_cast<uint64_t>(n_experts);
    case Dim::ExpertFfn: return static_cast<uint64_t>(expert_ffn_dim);
  }
  return 0;
}

std::string ModelConfig::experts_description() const {
  if (!has_experts()) return "";
  return strprintf("%lld experts per layer, %lld used per token, expert FFN %lld", static_cast<long long>(n_experts),
                   static_cast<long long>(n_experts_used), static_cast<long long>(expert_ffn_dim));
}

ModelConfig ModelConfig::from_gguf(const GgufFile& file) {
  const std::string name = file.get_string("general.architecture").value_or("");
  if (!find_architecture(name) && !find_architecture(name, true))
    fail("%s: unsupported architecture '%s' (supported: %s)", file.path().c_str(), name.c_str(),
         architecture_names().c_str());
  const std::string p = name + ".";
  refuse_unimplemented(file, p);
  ModelConfig config;
  // Both counts are checked before anything is sized by them.
  config.n_experts = optional_count(file, p + "expert_count", 0, 0, kMaxExperts);
  config.arch = find_architecture(name, config.n_experts > 0);
  if (!config.arch && config.n_experts > 0)
    unsupported(file, strprintf("a %s model with experts (%sexpert_count = %lld)", name.c_str(), p.c_str(),
                                static_cast<long long>(config.n_experts)));
  if (!config.arch)
    fail("%s: a %s model needs metadata '%sexpert_count' (1..%lld)", file.path().c_str(), name.c_str(), p.c_str(),
         static_cast<long long>(kMaxExperts));
  config.dim = require_count(file, p + "embedding_length", 1, 1 << 16);
  config.n_layers = require_count(file, p + "block_count", 1, 4096);
  if (config.arch->has_experts()) {
    config.n_experts_used = require_count(file, p + "expert_used_count", 1, config.n_experts);
    config.expert_ffn_dim = require_count(file, p + config.arch->expert_ffn_key, 1, 1 << 20);
    // The dense width some files also state is not used by an expert layer.
    config.ffn_dim = optional_count(file, p + "feed_forward_length", config.expert_ffn_dim, 1, 1 << 20);
  } else {
    config.ffn_dim = require_count(file, p + "feed_forward_length", 1, 1 << 20);
  }
  config.n_heads = require_count(file, p + "attention.head_count", 1, 1024);
  config.n_kv_heads = optional_count(file, p + "attention.head_count_kv", config.n_heads, 1, config.n_heads);
  if (config.n_heads % config.n_kv_heads != 0)
    fail("%s: head count %lld is not a multiple of the KV head count %lld", file.path().c_str(),
         static_cast<long long>(config.n_heads), static_cast<long long>(config.n_kv_heads));
  if (file.find(p + "attention.key_length")) {
    config.head_dim = require_count(file, p + "attention.key_length", 2, 1024);
  } else {
    if (config.dim % config.n_heads != 0)
      fail("%s: embedding length %lld is not a multiple of the head count %lld", file.path().c_str(),
           static_cast<long long>(config.dim), static_cast<long long>(config.n_heads));
    config.head_dim = config.dim / config.n_heads;
  }
  if (config.head_dim % 2 != 0 || config.head_dim > 1024)
    fail("%s: head dimension %lld must be even and at most 1024", file.path().c_str(),
         static_cast<long long>(config.head_dim));
  if (const int64_t value_length = optional_count(file, p + "attention.value_length", config.head_dim, 1, 1024);
      value_length != config.head_dim)
    unsupported(file, strprintf("a value head length (%lld) different from the key head length (%lld)",
                                static_cast<long long>(value_length), static_cast<long long>(config.head_dim)));
  config.rope_dim = optional_count(file, p + "rope.dimension_count", config.head_dim, 2, config.head_dim);
  if (config.rope_dim % 2 != 0) fail("%s: rope dimension count must be even", file.path().c_str());
  config.trained_context = optional_count(file, p + "context_length", 2048, 1, 1 << 24);
  config.rope_base = file.get_float(p + "rope.freq_base").value_or(10000.0);
  config.rms_eps = file.get_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-5);
  if (!(config.rope_base > 1.0) || !(config.rms_eps > 0.0 && config.rms_eps < 1.0))
    fail("%s: invalid rope base %g or RMS epsilon %g", file.path().c_str(), config.rope_base, config.rms_eps);
  config.attention_scale = file.get_float(p + "attention.scale").value_or(0.0);
  if (!(config.attention_scale >= 0.0 && config.attention_scale < 1e3))
    fail("%s: invalid attention scale %g", file.path().c_str(), config.attention_scale);
  config.rope_scaling = read_rope_scaling(file, p);

  const std::string embedding_name = tensor_name(TokenEmbedding);
  const TensorInfo* embedding = file.tensors().find(embedding_name);
  if (!embedding) fail("%s: tensor '%s' is missing", file.path().c_str(), embedding_name.c_str());
  if (embedding->n_dims != 2 || embedding->shape[1] > (1u << 22))
    fail("%s: tensor '%s' has shape %s, expected [%lld, n_vocab]", file.path().c_str(), embedding_name.c_str(),
         embedding->shape_string().c_str(), static_cast<long long>(config.dim));
  config.vocab = static_cast<int64_t>(embedding->shape[1]);
  return config;
}

ModelTensors ModelTensors::bind(const TensorTable& table, const ModelConfig& config) {
  ModelTensors tensors;
  tensors.layers_.resize(static_cast<size_t>(config.n_layers));
  auto require = [&](Role role, int64_t layer) -> const TensorInfo* {
    const Presence presence = config.arch->presence(role);
    if (presence == Presence::Absent) return nullptr;
    const RoleSpec& spec = role_spec(role);
    const std::string name = tensor_name(role, layer);
    if (presence == Presence::Optional && !table.find(name)) return nullptr;
    const uint64_t cols = config.extent(spec.cols);
    if (spec.slices == Dim::Experts && !table.find(name)) refuse_experts_one_tensor_each(table, role, layer);
    const TensorInfo* info = nullptr;
    if (spec.matrix && spec.slices != Dim::One)
      info = &table.require(name, {cols, config.extent(spec.rows), config.extent(spec.slices)}, supported_types());
    else if (spec.matrix)
      info = &table.require(name, {cols, config.extent(spec.rows)}, supported_types());
    else
      info = &table.require(name, {cols}, {TensorType::F32});
    tensors.located_[info] = {role, layer};
    return info;
  };
  for (const RoleSpec& spec : kRoles) {
    if (spec.per_layer) {
      for (int64_t l = 0; l < config.n_layers; ++l) tensors.layers_[static_cast<size_t>(l)][index_of(spec.role)] = require(spec.role, l);
    } else {
      tensors.globals_[index_of(spec.role)] = require(spec.role, -1);
    }
  }
  for (const TensorInfo& info : table.all())
    if (!tensors.located_.count(&info))
      fail("tensor '%s' is not part of a %s model as flexinfer implements it (ignoring it would compute a wrong "
           "result)", info.name.c_str(), config.arch->name);
  return tensors;
}

std::vector<const TensorInfo*> ModelTensors::all() const {
  std::vector<const TensorInfo*> list;
  for (const TensorInfo* info : globals_)
    if (info) list.push_back(info);
  for (const auto& layer : layers_)
    for (const TensorInfo* info : layer)
      if (info) list.push_back(info);
  return list;
}

NamedRole ModelTensors::locate(const TensorInfo* tensor) const {
  const auto found = located_.find(tensor);
  if (found == located_.end()) fail("internal: tensor '%s' is not bound", tensor ? tensor->name.c_str() : "(null)");
  return found->second;
}

}  // namespace fi
