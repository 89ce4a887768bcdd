#pragma once
// The model architectures flexinfer runs, described as data: one table of tensor roles (GGUF name,
// shape in terms of the hyperparameters, matrix or vector, the planner's preservation rank) and,
// per architecture, which roles it has and its flags. The loader, both weight stores, the planners'
// inputs and footprint, make-model and inspect all read these tables; a tensor name is spelled only
// in the role table. ModelConfig holds the hyperparameters a file's metadata gives, checked;
// ModelTensors binds every tensor of a file to its role, checked by name, type and exact shape.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/gguf.h"
#include "io/tensor_table.h"

namespace fi {

// What a tensor is for. The first ones occur once per model, the rest once per layer.
enum class Role : uint8_t {
  TokenEmbedding,
  OutputNorm,
  Output,
  RopeFrequencies,
  // Per layer:
  AttnNorm,
  AttnQ,
  AttnK,
  AttnV,
  AttnQBias,
  AttnKBias,
  AttnVBias,
  AttnQNorm,
  AttnKNorm,
  AttnOutput,
  AttnOutputBias,
  FfnNorm,
  FfnGate,
  FfnUp,
  FfnDown,
  FfnGateBias,
  FfnUpBias,
  FfnDownBias,
  // Mixture of experts: the router, and every expert's FFN stacked in one 3-D tensor per matrix
  // (expert e is the e-th slice of rows).
  FfnGateInp,
  FfnGateExps,
  FfnUpExps,
  FfnDownExps,
};
constexpr size_t kRoleCount = static_cast<size_t>(Role::FfnDownExps) + 1;
constexpr size_t index_of(Role role) { return static_cast<size_t>(role); }

// A tensor extent in terms of the hyperparameters.
enum class Dim : uint8_t { One, Model, QueryWidth, KvWidth, HeadDim, Ffn, Vocab, RopePairs, Experts, ExpertFfn };

// What a tensor counts as when bytes are summed by kind (inspect, footprint).
enum class RoleGroup : uint8_t { Embedding, Output, Attention, Ffn, Norm, Rope };

struct RoleSpec {
  Role role;
  const char* name;    // GGUF base name: "attn_q" is blk.N.attn_q.weight, "token_embd" token_embd.weight
  const char* suffix;  // "weight" or "bias"
  bool per_layer;
  bool matrix;         // a weight matrix of any matrix type; otherwise an F32 vector
  Dim cols;            // the row length (ggml's first dimension)
  Dim rows;            // One for vectors; of one slice for stacked tensors
  RoleGroup group;
  // Order in which a layer's matrices stay resident when memory is short (lower first; the paper's
  // flexible preservation: attention first, K and V smallest under GQA); -1 for what is not a
  // planned layer matrix.
  int preservation_rank;
  Dim slices = Dim::One;  // ggml's third dimension: the experts of a stacked tensor
};
const RoleSpec& role_spec(Role role);
bool is_layer_role(Role role);
// The tensor's GGUF name: "blk.3.attn_q.weight" (layer >= 0 for layer roles), "output_norm.weight".
std::string tensor_name(Role role, int64_t layer = -1);
// The inverse of tensor_name: the role and layer (-1 for a global role) a name stands for.
struct NamedRole {
  Role role;
  int64_t layer;
};
std::optional<NamedRole> parse_tensor_name(std::string_view name);
// Expert `expert`'s own tensor in files converted before llama.cpp stacked the experts (spring
// 2024; many Mixtral downloads): "blk.3.ffn_gate.5.weight" is slice 5 of "blk.3.ffn_gate_exps.weight".
// `stacked` is a role with experts as its slices.
std::string per_expert_tensor_name(Role stacked, int64_t layer, int64_t expert);
// The inverse: the stacked role, layer and expert such a name stands for.
struct PerExpertTensor {
  Role stacked;
  int64_t layer;
  int64_t expert;
};
std::optional<PerExpertTensor> parse_per_expert_tensor_name(std::string_view name);
// The layer roles that are planned matrices, in preservation order.
const std::vector<Role>& preserved_layer_matrices();
// The half of a mixture-of-experts layer that computes beside the experts: the feed-forward norm,
// the router and the stacked experts. The other half (attention) may compute on another device.
bool in_expert_half(Role role);

// The most experts per layer a file may declare (DeepSeek-V3 has 256): a corrupt count is refused
// before anything is sized by it.
constexpr int64_t kMaxExperts = 256;

enum class Presence : uint8_t { Absent, Optional, Required };
// How RoPE pairs the elements of a head: llama's adjacent pairs (2i, 2i+1), or GPT-NeoX's halves
// (i, i + rope_dim/2) as Qwen uses.
enum class RopeStyle : uint8_t { Adjacent, Neox };
enum class FfnActivation : uint8_t { SwiGlu };

struct Architecture {
  const char* name;  // general.architecture
  RopeStyle rope_style;
  FfnActivation activation;
  std::array<Presence, kRoleCount> roles;
  // Mixture of experts: the metadata key (after "<name>.") of an expert's FFN width; null for a
  // dense architecture. Routing is llama.cpp's for these: softmax over the router's logits, the
  // top expert_used_count, their weights renormalised to sum to one.
  const char* expert_ffn_key = nullptr;

  Presence presence(Role role) const { return roles[index_of(role)]; }
  // Flags that follow from the table.
  bool has_qk_norm() const { return presence(Role::AttnQNorm) == Presence::Required; }
  bool may_tie_output() const { return presence(Role::Output) == Presence::Optional; }
  bool has_experts() const { return expert_ffn_key != nullptr; }
};
// nullptr for an architecture flexinfer does not run. A name may have a dense and a
// mixture-of-experts variant (llama: Llama and Mixtral).
const Architecture* find_architecture(std::string_view name, bool experts = false);
const std::vector<const Architecture*>& architectures();
std::string architecture_names();  // "llama, qwen2, qwen3, qwen3moe"

struct RopeScaling {
  enum class Type : uint8_t { None, Linear, Llama3 };
  Type type = Type::None;
  double factor = 1.0;              // linear: positions are divided by it; llama3: the long-wavelength factor
  double original_context = 8192;   // llama3
  double low_frequency_factor = 1;  // llama3
  double high_frequency_factor = 4; // llama3
};

// Hyperparameters from `<architecture>.*` metadata, checked against each other.
struct ModelConfig {
  const Architecture* arch = nullptr;
  int64_t dim = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;  // attention.key_length, else dim / n_heads
  int64_t ffn_dim = 0;
  int64_t vocab = 0;
  int64_t trained_context = 0;
  int64_t rope_dim = 0;
  double rope_base = 10000.0;
  double rms_eps = 1e-5;
  double attention_scale = 0.0;  // 0: 1/sqrt(head_dim)
  RopeScaling rope_scaling;
  // Mixture of experts (0 when dense): experts per layer, chosen per token, an expert's FFN width.
  int64_t n_experts = 0;
  int64_t n_experts_used = 0;
  int64_t expert_ffn_dim = 0;

  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
  bool has_experts() const { return n_experts > 0; }
  // "8 experts per layer, 2 used per token, expert FFN 256"; empty when dense.
  std::string experts_description() const;
  uint64_t extent(Dim dim) const;
  // Reads the metadata of a file of a supported architecture; refuses, in one line naming it, any
  // architecture or metadata the engine does not implement (sliding windows, other RoPE scaling,
  // logit or embedding scales, experts ...).
  static ModelConfig from_gguf(const GgufFile& file);
};

// Every tensor of a model by role and layer, each checked by name, type and exact shape; a tensor
// the architecture has no role for is refused (ignoring it would compute a wrong result).
class ModelTensors {
 public:
  static ModelTensors bind(const TensorTable& table, const ModelConfig& config);

  // nullptr when an optional tensor is absent.
  const TensorInfo* global(Role role) const { return globals_[index_of(role)]; }
  const TensorInfo* layer(int64_t layer, Role role) const {
    return layers_[static_cast<size_t>(layer)][index_of(role)];
  }
  bool tied_output() const { return global(Role::Output) == nullptr; }
  // The matrix the output head multiplies with: output.weight, or the embedding when tied.
  const TensorInfo& output() const { return tied_output() ? *global(Role::TokenEmbedding) : *global(Role::Output); }
  int64_t layer_count() const { return static_cast<int64_t>(layers_.size()); }
  // Every bound tensor, globals first, then layer by layer in role order.
  std::vector<const TensorInfo*> all() const;
  // The role and layer of a bound tensor.
  NamedRole locate(const TensorInfo* tensor) const;

 private:
  std::unordered_map<const TensorInfo*, NamedRole> located_;
  std::array<const TensorInfo*, kRoleCount> globals_{};
  std::vector<std::array<const TensorInfo*, kRoleCount>> layers_;
};

}  // namespace fi
