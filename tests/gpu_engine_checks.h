#pragma once
// The engine with every layer on the GPU, checked against the CPU engine and against the budget;
// shared by test_gpu (a real device) and test_gpu_reference (host memory standing in for one).
#include <optional>
#include <string>
#include <vector>

#include "host/engine/engine.h"
#include "planner/profile.h"
#include "tools/model_maker.h"

namespace fi::test {

// The CPU quantizes activations to 8 bits for quantized weights and the GPU does not, so the
// tolerance (relative RMS of the logits) is the goldens': 5e-3 for float weights, 5e-2 for
// quantized ones.
struct EngineCase {
  const char* name;
  WeightScheme scheme;
  double tolerance;
  bool tied;
};
inline constexpr EngineCase kEngineCases[] = {
    {"f32", WeightScheme::F32, 5e-3, false},       {"f16", WeightScheme::F16, 5e-3, false},
    {"q8_0", WeightScheme::Q8_0, 5e-2, false},     {"q4_0", WeightScheme::Q4_0, 5e-2, true},
    {"q4_k_m", WeightScheme::Q4_K_M, 5e-2, false}, {"q6_k", WeightScheme::Q6_K, 5e-2, false},
    {"q4_1", WeightScheme::Q4_1, 5e-2, false},     {"q5_0", WeightScheme::Q5_0, 5e-2, false},
    {"q5_1", WeightScheme::Q5_1, 5e-2, false},     {"q2_k", WeightScheme::Q2_K, 5e-2, false},
    {"q3_k_m", WeightScheme::Q3_K_M, 5e-2, false}, {"q5_k_m", WeightScheme::Q5_K_M, 5e-2, false},
    {"iq4_nl", WeightScheme::IQ4_NL, 5e-2, false}, {"iq4_xs", WeightScheme::IQ4_XS, 5e-2, true}};

// Machines the three-tier tests plan for, so that no cached probe profile changes their plans: on
// the first PCIe is fast and the CPU slow (every layer decodes on the GPU); on the second PCIe is
// slow and the CPU and disk fast (the last layers decode on the CPU, reading from disk what host
// memory does not hold).
Profile gpu_favoured_profile();
Profile cpu_favoured_profile();

// Engine options for `path` and `context` with a GPU budget a sixteenth of the weights short (or
// more, where that leaves no room) and a profile under which the last layers decode on the CPU
// (host memory unlimited).
EngineOptions cpu_decoded_layers_options(const std::string& path, int64_t context);

// A 10-token prefill (the cuBLAS path), 4 decode steps (the matrix-vector kernels) and a 6-token
// prefill after them on the GPU and on the CPU, every position's logits compared.
void check_gpu_logits_match_cpu(const EngineCase& engine_case);
// One byte under what the whole model needs splits it over the tiers within the budget; far too
// little is refused, naming the minimums; at the whole model's need everything is resident and
// the device memory taken stays within the budget.
void check_gpu_budget();
// A mixture-of-experts model with a GPU, every expert in VRAM or (a budget below that) attention
// there and each layer's experts on the CPU: within tolerance of the CPU engine; beside the GPU,
// bit-identical over host budgets from the fewest expert slots to every expert, none exceeded; a
// GPU budget below the dense half is one clear line.
// The smallest --gpu-mem for the experts beside the GPU (a 64-token context per sequence).
uint64_t dense_half_gpu_bytes(const std::string& path, int64_t sequences = 1);
void check_gpu_experts();
// Experts on the CPU with VRAM to spare beside the dense half: a cache of experts there, prefill's
// experts uploaded where that pays; results close to the CPU's and every expert on the GPU, and
// the same bits under every host budget.
void check_gpu_expert_cache();
// The VRAM expert cache beside the CPU, experts read on demand from a file cut short mid-pass: the
// passes fail, and once the file is whole the same engine's logits are those of a run that never
// failed, within check_gpu_expert_cache's tolerance.
void check_gpu_expert_cache_recovers_from_a_failed_pass();
// Budgets that split the model over VRAM, pinned host memory and disk (every layer still on the
// GPU) give logits bit-identical to the fully resident run, and keep both budgets.
void check_gpu_tiers_bit_identical(const std::string& name, const ModelShape& shape, WeightScheme scheme);
// A model file cut short while the tiers stream from it (GPU-decoded layers uploading rows read
// from disk, and CPU-decoded ones computing from them): the passes fail with the reason, and once
// the file is whole again the same engine gives the logits of a run that never failed.
void check_gpu_tiers_recover_from_a_failed_pass();
// Models of 4 layers and dim 512 for those sweeps: llama 2 style, and each newer family's features.
inline const ModelShape kTierShape{512, 4, 8, 4, 1536, 2048, 0, 10000.0, false};
inline const ModelShape kTierShapeLlama3{512, 4, 8, 4, 1536, 2048, 0, 500000.0, false, "llama", 0,
                                         {RopeScaling::Type::Llama3, 8.0, 64, 1, 4}};
inline const ModelShape kTierShapeQwen2{512, 4, 8, 4, 1536, 2048, 0, 1000000.0, false, "qwen2"};
inline const ModelShape kTierShapeQwen3{512, 4, 8, 4, 1536, 2048, 0, 1000000.0, false, "qwen3", 128};
// Every layer on the GPU (a prefill through cuBLAS, then decode steps) against the float64
// reference forward pass.
void check_gpu_matches_float64_reference(const std::string& name, const ModelShape& shape, WeightScheme scheme,
                                         double tolerance, const std::vector<TensorTypeOverride>& tensor_types = {});
// Budgets under which the last layers decode on the CPU, from host memory and from disk: prefill
// (every layer on the GPU, the CPU layers' KV cache visiting) gives the resident run's logits bit
// for bit; decode steps and a later prefill (over keys and values the CPU wrote) stay within the
// tolerance of both the resident GPU run and the CPU engine; both budgets are kept.
void check_gpu_cpu_decoded_layers(const EngineCase& engine_case);
// check_gpu_tiers_bit_identical for each newer family (Llama 3.1's RoPE factors, Qwen2's biases,
// Qwen3's Q/K norm and wide heads), and for the files of each weight type added with them (Q2_K,
// Q3_K_M, IQ4_XS, Q4_1, Q5_0, Q5_1, IQ4_NL).
void check_gpu_newer_families_tiers();
// Each newer family's operations (biases, NeoX RoPE, Q/K norm, head_dim other than dim / heads, RoPE
// scaling) on the device against the float64 reference.
void check_gpu_newer_families_reference();
// Three sequences sharing passes (prompts beside prompts and beside decode tokens, a slot rewound
// and reused), fully resident and with the last layers decoded on the CPU (their other sequences'
// positions visiting the device for prefill), against each sequence alone under the same placement
// with the same pieces: bit for bit when one device computes every layer, else within tolerance.
void check_gpu_sequences_share_passes();
// With a trace, a split run records disk reads, uploads and GPU compute per layer.
void check_gpu_trace();

}  // namespace fi::test
