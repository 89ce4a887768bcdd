#pragma once
// Random-weight GGUF files of every architecture flexinfer runs, in realistic shapes, written in a
// streaming way (memory use does not grow with the model). Tests and benchmarks use them.
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "host/kernels/thread_pool.h"
#include "io/architecture.h"
#include "io/tensor_type.h"

namespace fi {

struct ModelShape {
  int64_t dim = 256;
  int64_t n_layers = 4;
  int64_t n_heads = 8;
  int64_t n_kv_heads = 4;
  int64_t ffn_dim = 768;
  int64_t context = 2048;
  int64_t rope_dim = 0;  // 0: head dimension
  double rope_base = 10000.0;
  bool tied_embeddings = false;
  std::string arch = "llama";  // general.architecture; what it has comes from io/architecture.h
  int64_t head_dim = 0;        // 0: dim / n_heads; otherwise written as attention.key_length
  // Linear scaling is written as rope.scaling.*; llama3 scaling as the frequency factors of a
  // rope_freqs tensor, as Llama 3.1 files carry it.
  RopeScaling rope_scaling;
  bool biases = false;  // a llama model's optional Q/K/V biases (qwen2 always has them)
  // Mixture of experts (0: dense): experts per layer, chosen per token, an expert's FFN width.
  int64_t n_experts = 0;
  int64_t n_experts_used = 0;
  int64_t expert_ffn_dim = 0;
  // How unevenly the router favours experts: 0 uniform; larger scales some experts' router rows
  // up (exp(skew * u), u uniform in [0, 1) per expert), so they win more often, as in trained models.
  double router_skew = 0.0;
};

// micro (a few KiB, for fuzzing seeds), tiny, 1b (Llama-3.2-1B-like, tied), 7b, 13b, 70b (llama 2
// shapes), and real shapes of the newer families: llama3.2-1b, llama3.1-8b, mistral-nemo-12b,
// qwen2.5-1.5b, qwen2.5-7b, qwen3-1.7b, qwen3-8b, and small ones of each family's features for
// tests (tiny-llama3, tiny-qwen2, tiny-qwen3); mixture-of-experts shapes qwen3-30b-a3b,
// qwen3-235b-a22b, mixtral-8x7b, tiny-qwen3moe and tiny-mixtral (the shapes of ../shared/data's MoE
// fixtures), tiny-qwen3moe-wide and tiny-mixtral-top1 (other expert counts and widths, for the
// goldens in tests/data); nullopt for other names.
std::optional<ModelShape> find_preset(const std::string& name);
const std::vector<std::string>& preset_names();
// What is wrong with `arch` as make-model's architecture ("" when flexinfer runs it).
std::string architecture_problem(const std::string& arch);
// The shape as architecture `arch` (throws for an unknown one): qwen3 gets a head dimension of
// twice dim / heads unless one is set (Qwen3's small models have head_dim 128 > dim / heads); an
// architecture of experts only (qwen3moe) gets 8 experts, 2 chosen, unless the shape has some.
ModelShape with_architecture(ModelShape shape, const std::string& arch);

// What --type writes: one type for every matrix (f32 ... q6_k, iq4_nl, iq4_xs; the quantized ones
// with output.weight in Q6_K, or Q8_0 for q8_0, as llama.cpp does), or llama.cpp's mixes: q4_k
// (its Q4_K_S without the first layers' Q5_K), q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_m, q5_k_m.
enum class WeightScheme { F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K, Q4_K_M, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS };
std::optional<WeightScheme> parse_weight_scheme(const std::string& name);
const char* weight_scheme_name(WeightScheme scheme);  // as parse_weight_scheme reads it
// Every name parse_weight_scheme accepts (make-model --type), in the order above.
const std::vector<std::string>& weight_scheme_names();
// The type a tensor of `role` (in `layer`, -1 for global ones) gets in a file of `scheme`, as
// llama.cpp's quantizer chooses it for that file type without an importance matrix (its mixes, the
// output head's higher precision, a tied embedding quantized as the head, and its fallback types
// for rows its block size does not divide); F32 for vectors.
TensorType scheme_tensor_type(WeightScheme scheme, Role role, int64_t layer, const ModelShape& shape);

// Every tensor of one role in one type whatever the scheme says (llama-quantize's --tensor-type,
// as in files whose experts' gate and up differ).
struct TensorTypeOverride {
  Role role;
  TensorType type;
};
// "ffn_up_exps=q8_0": a matrix role's GGUF base name and a type name (any case); nullopt with
// `problem` saying what is wrong.
std::optional<TensorTypeOverride> parse_tensor_type_override(const std::string& text, std::string* problem);

struct MakeModelOptions {
  ModelShape shape;
  WeightScheme scheme = WeightScheme::F16;
  std::vector<TensorTypeOverride> tensor_types;
  std::string vocab_path;  // a GGUF whose tokenizer.* metadata is copied; empty: byte-level vocabulary
  uint64_t seed = 1;
  std::string output_path;
  // When it becomes true the writing stops between two chunks with an Error.
  const std::atomic<bool>* stop = nullptr;
};

// Writes output_path through io/file.h's UnfinishedFile: an error or `stop` leaves no unfinished file
// and a file already at output_path as it was. Returns the file's size in bytes.
uint64_t make_model(const MakeModelOptions& options, ThreadPool& pool);

}  // namespace fi
