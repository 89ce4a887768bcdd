// The model description (io/architecture.h): its tables, the hyperparameters read from metadata,
// the binding of a file's tensors to roles, and the refusal of what the engine does not implement.
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "host/model/model.h"
#include "io/architecture.h"
#include "io/error.h"
#include "io/gguf.h"
#include "io/stack_experts.h"
#include "host/engine/placement.h"
#include "planner/footprint.h"
#include "test_support.h"

namespace fi {
namespace {

std::string open_error(const std::string& path) {
  try {
    Model::open(path);
  } catch (const Error& error) {
    return error.what();
  }
  return "(opened)";
}

std::string tiny(const std::string& preset) { return test::preset_model(preset, "f16"); }

TEST(Architecture, EveryRoleHasOneNameThatParsesBack) {
  std::set<std::string> names;
  for (size_t r = 0; r < kRoleCount; ++r) {
    const auto role = static_cast<Role>(r);
    const std::string name = tensor_name(role, is_layer_role(role) ? 7 : -1);
    EXPECT_TRUE(names.insert(name).second) << name << " names two roles";
    const auto parsed = parse_tensor_name(name);
    ASSERT_TRUE(parsed.has_value()) << name;
    EXPECT_EQ(parsed->role, role) << name;
    EXPECT_EQ(parsed->layer, is_layer_role(role) ? 7 : -1) << name;
  }
  for (const char* name : {"blk.x.attn_q.weight", "blk.3", "token_embd", "blk.-1.attn_q.weight", "blk.3.attn_qkv.weight",
                           "output.bias", "blk.03x.attn_q.weight"})
    EXPECT_FALSE(parse_tensor_name(name).has_value()) << name;
}

TEST(Architecture, PreservationOrderIsAttentionFirstKAndVSmallest) {
  const std::vector<Role> expected = {Role::AttnK,       Role::AttnV,     Role::AttnQ,      Role::AttnOutput,
                                      Role::FfnGateInp,  Role::FfnGate,   Role::FfnUp,      Role::FfnDown,
                                      Role::FfnGateExps, Role::FfnUpExps, Role::FfnDownExps};
  EXPECT_EQ(preserved_layer_matrices(), expected);
}

TEST(Architecture, FamiliesAreTableEntries) {
  EXPECT_EQ(architecture_names(), "llama, qwen2, qwen3, qwen3moe");
  // Llama's expert variant (Mixtral) and Qwen3-MoE: the router and stacked experts instead of the dense FFN.
  for (const Architecture* moe : {find_architecture("llama", true), find_architecture("qwen3moe", true)}) {
    ASSERT_NE(moe, nullptr);
    EXPECT_TRUE(moe->has_experts());
    EXPECT_EQ(moe->presence(Role::FfnGate), Presence::Absent) << moe->name;
    for (Role role : {Role::FfnGateInp, Role::FfnGateExps, Role::FfnUpExps, Role::FfnDownExps})
      EXPECT_EQ(moe->presence(role), Presence::Required) << moe->name;
  }
  EXPECT_TRUE(find_architecture("qwen3moe", true)->has_qk_norm());
  EXPECT_EQ(find_architecture("qwen3moe"), nullptr) << "no dense qwen3moe";
  EXPECT_EQ(find_architecture("qwen3", true), nullptr) << "no qwen3 with experts";
  EXPECT_FALSE(find_architecture("llama")->has_experts());
  EXPECT_EQ(role_spec(Role::FfnDownExps).slices, Dim::Experts);
  EXPECT_EQ(role_spec(Role::FfnDown).slices, Dim::One);
  EXPECT_EQ(find_architecture("llama")->rope_style, RopeStyle::Adjacent);
  EXPECT_EQ(find_architecture("qwen2")->rope_style, RopeStyle::Neox);
  EXPECT_EQ(find_architecture("qwen2")->presence(Role::AttnQBias), Presence::Required);
  EXPECT_TRUE(find_architecture("qwen3")->has_qk_norm());
  EXPECT_FALSE(find_architecture("llama")->has_qk_norm());
  for (const Architecture* arch : architectures()) EXPECT_TRUE(arch->may_tie_output()) << arch->name;
  EXPECT_EQ(find_architecture("gemma2"), nullptr);
}

TEST(Architecture, HyperparametersOfEachFamily) {
  const auto llama3 = Model::open(tiny("tiny-llama3"));
  EXPECT_EQ(llama3->config().head_dim, 64);  // key_length, not dim / heads (32)
  EXPECT_EQ(llama3->config().q_dim(), 512);
  EXPECT_NE(llama3->tensors().global(Role::RopeFrequencies), nullptr);
  const auto qwen2 = Model::open(tiny("tiny-qwen2"));
  EXPECT_EQ(qwen2->config().rope_scaling.type, RopeScaling::Type::Linear);
  EXPECT_DOUBLE_EQ(qwen2->config().rope_scaling.factor, 2.0);
  EXPECT_TRUE(qwen2->tied_output());
  EXPECT_NE(qwen2->tensors().layer(3, Role::AttnVBias), nullptr);
  const auto qwen3moe = Model::open(tiny("tiny-qwen3moe"));
  EXPECT_EQ(qwen3moe->config().n_experts, 8);
  EXPECT_EQ(qwen3moe->config().n_experts_used, 2);
  EXPECT_EQ(qwen3moe->config().expert_ffn_dim, 256);
  EXPECT_EQ(qwen3moe->config().ffn_dim, 512) << "the dense width the file states, unused";
  EXPECT_EQ(qwen3moe->tensors().layer(3, Role::FfnDownExps)->shape, (std::array<uint64_t, 4>{256, 256, 8, 1}));
  EXPECT_EQ(qwen3moe->tensors().layer(3, Role::FfnGateInp)->type, TensorType::F32);
  const auto mixtral = Model::open(tiny("tiny-mixtral"));
  EXPECT_EQ(mixtral->config().arch, find_architecture("llama", true));
  EXPECT_EQ(mixtral->config().expert_ffn_dim, 512) << "Mixtral's feed_forward_length is an expert's";
  EXPECT_EQ(mixtral->tensors().layer(1, Role::FfnGateExps)->shape, (std::array<uint64_t, 4>{256, 512, 4, 1}));
  EXPECT_EQ(mixtral->tensors().layer(1, Role::FfnGate), nullptr);
  const auto qwen3 = Model::open(tiny("tiny-qwen3"));
  EXPECT_EQ(qwen3->config().head_dim, 128);
  EXPECT_NE(qwen3->tensors().layer(0, Role::AttnKNorm), nullptr);
  EXPECT_EQ(qwen3->tensors().layer(0, Role::AttnQBias), nullptr);
  // Linear scaling divides every frequency by its factor; the frequency factors divide their own.
  const ModelConfig& c = qwen2->config();
  for (int64_t i = 0; i < c.rope_dim / 2; ++i)
    EXPECT_NEAR(qwen2->inverse_frequencies()[static_cast<size_t>(i)],
                std::pow(c.rope_base, -2.0 * static_cast<double>(i) / static_cast<double>(c.rope_dim)) / 2.0, 1e-15);
}

TEST(Architecture, Llama3ScalingFromMetadataEqualsTheFactorsTensor) {
  // The factors as a tensor (what converters write) and as rope.scaling.* metadata give the same
  // frequencies.
  const std::string with_tensor = tiny("tiny-llama3");
  const std::string from_metadata = test::edited_model(with_tensor, "llama3-scaling-metadata",
                                                       {{}, [](GgufWriter& writer) {
                                                          writer.add_string("llama.rope.scaling.type", "llama3");
                                                          writer.add_float32("llama.rope.scaling.factor", 8.0f);
                                                          writer.add_uint32("llama.rope.scaling.original_context_length", 8192);
                                                        },
                                                        {tensor_name(Role::RopeFrequencies)}, {}});
  const auto a = Model::open(with_tensor), b = Model::open(from_metadata);
  ASSERT_EQ(a->inverse_frequencies().size(), b->inverse_frequencies().size());
  for (size_t i = 0; i < a->inverse_frequencies().size(); ++i)
    EXPECT_NEAR(a->inverse_frequencies()[i] / b->inverse_frequencies()[i], 1.0, 1e-6) << "pair " << i;
}

TEST(Architecture, FootprintSumsBytesByRole) {
  const std::string path = test::edited_model(tiny("tiny-qwen2"), "footprint",
                                              {{}, {}, {}, {{"blk.0.attn_qkv.weight", TensorType::F32, {256, 4}}}});
  const GgufFile file = GgufFile::open(path);
  const ModelFootprint footprint = ModelFootprint::of(file.tensors());
  ASSERT_EQ(footprint.layers.size(), 4u);
  const TensorTable& t = file.tensors();
  auto bytes = [&](const char* name) { return t.find(name)->bytes; };
  EXPECT_EQ(footprint.layers[1].norm_bytes, bytes("blk.1.attn_norm.weight") + bytes("blk.1.ffn_norm.weight"));
  EXPECT_EQ(footprint.layers[1].attention_bytes,
            bytes("blk.1.attn_q.weight") + bytes("blk.1.attn_k.weight") + bytes("blk.1.attn_v.weight") +
                bytes("blk.1.attn_output.weight") + bytes("blk.1.attn_q.bias") + bytes("blk.1.attn_k.bias") +
                bytes("blk.1.attn_v.bias"));
  EXPECT_EQ(footprint.by_group.at("attn_k.bias"), 4 * bytes("blk.0.attn_k.bias"));
  EXPECT_EQ(footprint.embedding_bytes, bytes("token_embd.weight"));
  EXPECT_EQ(footprint.output_bytes, bytes("output_norm.weight")) << "tied: the head has no matrix of its own";
  EXPECT_EQ(footprint.other_bytes, bytes("blk.0.attn_qkv.weight")) << "a tensor without a role";
  EXPECT_EQ(footprint.total(), t.total_bytes());
}

// The stacked expert tensors count whole: footprint, the planner's units (an expert tensor's rows
// are every expert's) and the weight bytes the plan places.
TEST(Architecture, StackedExpertsCountInFootprintAndPlan) {
  const auto model = Model::open(test::preset_model("tiny-qwen3moe", "q4_k"));
  const ModelConfig& c = model->config();
  const uint64_t expert_matrix = static_cast<uint64_t>(c.n_experts * c.expert_ffn_dim) * row_bytes(TensorType::Q4_K, 256);
  const ModelFootprint footprint = ModelFootprint::of(model->file().tensors());
  EXPECT_EQ(footprint.by_group.at("ffn_gate_exps"), static_cast<uint64_t>(c.n_layers) * expert_matrix);
  EXPECT_EQ(footprint.by_group.at("ffn_gate_inp"), static_cast<uint64_t>(c.n_layers * c.n_experts * c.dim) * 4);
  EXPECT_EQ(footprint.total(), model->file().tensors().total_bytes());
  const Plan plan = make_plan(host_plan_input(*model, std::nullopt, 2));
  ASSERT_EQ(plan.units.size(), static_cast<size_t>(c.n_layers) + 1);
  const PlanUnit& layer = plan.units[1];
  ASSERT_EQ(layer.matrices.size(), 8u) << "attention, the router, three stacked expert tensors";
  EXPECT_EQ(layer.matrices[4].tensor, model->tensors().layer(1, Role::FfnGateInp));
  EXPECT_EQ(layer.matrices[5].rows, static_cast<uint64_t>(c.n_experts * c.expert_ffn_dim));
  EXPECT_EQ(layer.matrices[5].bytes(), expert_matrix);
  uint64_t matrices = 0;
  for (const TensorInfo* tensor : model->tensors().all())
    if (role_spec(model->tensors().locate(tensor).role).matrix && tensor != model->tensors().global(Role::TokenEmbedding))
      matrices += tensor->bytes;
  EXPECT_EQ(plan.weight_bytes(), matrices);
}

struct Refusal {
  const char* name;
  const char* preset;
  test::ModelEdit edit;
  const char* says;
};

void PrintTo(const Refusal& refusal, std::ostream* out) { *out << refusal.name; }

class RefusedFile : public ::testing::TestWithParam<Refusal> {};

// What the engine does not implement is refused in one line naming it, never run wrongly.
TEST_P(RefusedFile, IsRefusedNamingWhatIsUnsupported) {
  const Refusal& refusal = GetParam();
  const std::string path = test::edited_model(tiny(refusal.preset), refusal.name, refusal.edit);
  const std::string error = open_error(path);
  EXPECT_NE(error.find(refusal.says), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << "one line: " << error;
}

auto set_string(std::string key, std::string value) {
  return [key, value](GgufWriter& writer) { writer.add_string(key, value); };
}
auto set_uint(std::string key, uint32_t value) {
  return [key, value](GgufWriter& writer) { writer.add_uint32(key, value); };
}
auto set_float(std::string key, float value) {
  return [key, value](GgufWriter& writer) { writer.add_float32(key, value); };
}

const Refusal kRefusals[] = {
    {"gemma2", "tiny-llama3", {{"general.architecture"}, set_string("general.architecture", "gemma2")},
     "unsupported architecture 'gemma2' (supported: llama, qwen2, qwen3, qwen3moe)"},
    {"yarn", "tiny-qwen2", {{"qwen2.rope.scaling.type"}, set_string("qwen2.rope.scaling.type", "yarn")},
     "RoPE scaling type 'yarn'"},
    {"sliding_window", "tiny-qwen3", {{}, set_uint("qwen3.attention.sliding_window", 4096)}, "sliding-window attention"},
    // Expert counts are checked before anything is sized by them.
    {"experts_without_used_count", "tiny-llama3", {{}, set_uint("llama.expert_count", 8)},
     "missing metadata 'llama.expert_used_count'"},
    {"expert_count_huge", "tiny-qwen3moe", {{"qwen3moe.expert_count"}, set_uint("qwen3moe.expert_count", 100000)},
     "'qwen3moe.expert_count' = 100000 is outside 0..256"},
    {"expert_used_past_count", "tiny-qwen3moe",
     {{"qwen3moe.expert_used_count"}, set_uint("qwen3moe.expert_used_count", 9)},
     "'qwen3moe.expert_used_count' = 9 is outside 1..8"},
    {"expert_used_zero", "tiny-mixtral", {{"llama.expert_used_count"}, set_uint("llama.expert_used_count", 0)},
     "'llama.expert_used_count' = 0 is outside 1..4"},
    {"no_expert_count", "tiny-qwen3moe", {{"qwen3moe.expert_count"}, {}},
     "a qwen3moe model needs metadata 'qwen3moe.expert_count'"},
    {"qwen3_with_experts", "tiny-qwen3", {{}, set_uint("qwen3.expert_count", 8)}, "a qwen3 model with experts"},
    {"shared_experts", "tiny-qwen3moe", {{}, set_uint("qwen3moe.expert_shared_count", 1)}, "shared experts"},
    {"expert_count_mismatch", "tiny-qwen3moe", {{"qwen3moe.expert_count"}, set_uint("qwen3moe.expert_count", 4)},
     "'blk.0.ffn_gate_inp.weight': expected shape [256, 4], got [256, 8]"},
    {"stacked_wrong_shape", "tiny-qwen3moe",
     {{}, {}, {"blk.1.ffn_up_exps.weight"}, {{"blk.1.ffn_up_exps.weight", TensorType::F32, {256, 128, 8}}}},
     "'blk.1.ffn_up_exps.weight': expected shape [256, 256, 8], got [256, 128, 8]"},
    {"experts_one_tensor_each", "tiny-mixtral",
     {{}, {}, {"blk.0.ffn_gate_exps.weight"}, {{"blk.0.ffn_gate.0.weight", TensorType::F32, {256, 256}}}},
     "tensor 'blk.0.ffn_gate.0.weight': this file stores each expert as a tensor of its own"},
    {"logit_scale", "tiny-llama3", {{}, set_float("llama.logit_scale", 0.5f)}, "llama.logit_scale"},
    {"softcap", "tiny-qwen2", {{}, set_float("qwen2.final_logit_softcapping", 30.0f)}, "final_logit_softcapping"},
    {"value_length", "tiny-qwen3", {{"qwen3.attention.value_length"}, set_uint("qwen3.attention.value_length", 64)},
     "value head length (64) different from the key head length (128)"},
    {"unknown_tensor", "tiny-qwen3", {{}, {}, {}, {{"blk.0.attn_qkv.weight", TensorType::F32, {256, 768}}}},
     "'blk.0.attn_qkv.weight' is not part of a qwen3 model"},
    {"bias_in_qwen3_layer_past_the_end", "tiny-qwen3", {{}, {}, {}, {{"blk.4.attn_norm.weight", TensorType::F32, {256}}}},
     "'blk.4.attn_norm.weight' is not part of a qwen3 model"},
    {"missing_bias", "tiny-qwen2", {{}, {}, {"blk.2.attn_k.bias"}, {}}, "'blk.2.attn_k.bias' [64] is missing"},
    {"missing_qk_norm", "tiny-qwen3", {{}, {}, {"blk.1.attn_q_norm.weight"}, {}}, "'blk.1.attn_q_norm.weight' [128] is missing"},
    {"wrong_head_dim", "tiny-qwen3",
     {{"qwen3.attention.key_length", "qwen3.attention.value_length", "qwen3.rope.dimension_count"}, {}},
     "'blk.0.attn_q.weight': expected shape [256, 256], got [256, 512]"},
    {"quantized_norm", "tiny-llama3",
     {{}, {}, {"blk.0.ffn_norm.weight"}, {{"blk.0.ffn_norm.weight", TensorType::F16, {256}}}},
     "'blk.0.ffn_norm.weight': expected type F32, got F16"},
};

INSTANTIATE_TEST_SUITE_P(Files, RefusedFile, ::testing::ValuesIn(kRefusals),
                         [](const auto& info) { return std::string(info.param.name); });

// A file flexinfer cannot run is still shown in full by inspect; running it fails in one line.
TEST(Architecture, InspectShowsWhatItCannotRun) {
  const std::string path = test::edited_model(tiny("tiny-qwen3"), "gemma2-inspect",
                                              {{"general.architecture"}, set_string("general.architecture", "gemma2")});
  const test::CommandResult inspect = test::run_flexinfer({"inspect", path});
  EXPECT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("gemma2"), std::string::npos);
  EXPECT_NE(inspect.out.find("blk.3.attn_k_norm.weight"), std::string::npos);
  const test::CommandResult run = test::run_flexinfer({"generate", "-m", path, "-p", "hi", "-n", "2"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("unsupported architecture 'gemma2'"), std::string::npos) << run.err;
}

// What to alter in a per-expert copy.
struct PerExpertEdit {
  int64_t left_out_expert = -1;  // this expert of layer 1's down projection is not written
  bool odd_type = false;         // layer 1's down projection of expert 2 is F32, its others F16
};

// A copy of a stacked file as conversions before stacking wrote it: per layer, each expert's gate,
// down and up in turn (the original checkpoint's order), the bytes of the stacked tensors' slices.
std::string per_expert_copy(const std::string& stacked, const std::string& name, const PerExpertEdit& edit = {}) {
  const GgufFile file = GgufFile::open(stacked);
  const std::vector<uint8_t> bytes = test::read_bytes(stacked);
  const std::string path = test::scratch_path(name + ".gguf");
  GgufWriter writer(path);
  for (const auto& [key, value] : file.metadata()) writer.add_value(key, value);
  struct Piece {
    const uint8_t* data;
    uint64_t bytes;
    bool zeros;
  };
  std::vector<Piece> pieces;
  for (const TensorInfo& tensor : file.tensors().all()) {
    const std::optional<NamedRole> named = parse_tensor_name(tensor.name);
    if (!named || role_spec(named->role).slices != Dim::Experts) {
      writer.add_tensor(tensor.name, tensor.type, std::vector<uint64_t>(tensor.shape.begin(), tensor.shape.begin() + tensor.n_dims));
      pieces.push_back({bytes.data() + tensor.file_offset, tensor.bytes, false});
      continue;
    }
    if (named->role != Role::FfnGateExps) continue;  // written with the gate, expert by expert
    const int64_t experts = static_cast<int64_t>(tensor.shape[2]);
    for (int64_t e = 0; e < experts; ++e)
      for (Role role : {Role::FfnGateExps, Role::FfnDownExps, Role::FfnUpExps}) {
        const TensorInfo& whole = *file.tensors().find(tensor_name(role, named->layer));
        const bool down_of_layer_1 = role == Role::FfnDownExps && named->layer == 1;
        if (down_of_layer_1 && e == edit.left_out_expert) continue;
        const uint64_t slice = whole.bytes / static_cast<uint64_t>(experts);
        if (down_of_layer_1 && e == 2 && edit.odd_type) {
          writer.add_tensor(per_expert_tensor_name(role, named->layer, e), TensorType::F32, {whole.shape[0], whole.shape[1]});
          pieces.push_back({nullptr, whole.shape[0] * whole.shape[1] * 4, true});
          continue;
        }
        writer.add_tensor(per_expert_tensor_name(role, named->layer, e), whole.type, {whole.shape[0], whole.shape[1]});
        pieces.push_back({bytes.data() + whole.file_offset + static_cast<uint64_t>(e) * slice, slice, false});
      }
  }
  writer.begin_data();
  for (const Piece& piece : pieces) {
    if (!piece.zeros) {
      writer.write_data(piece.data, piece.bytes);
      continue;
    }
    const std::vector<uint8_t> zeros(piece.bytes, 0);
    writer.write_data(zeros.data(), zeros.size());
  }
  writer.finish();
  return path;
}

TEST(StackExperts, PerExpertNamesParseBack) {
  for (Role role : {Role::FfnGateExps, Role::FfnUpExps, Role::FfnDownExps}) {
    const std::string name = per_expert_tensor_name(role, 12, 7);
    const auto parsed = parse_per_expert_tensor_name(name);
    ASSERT_TRUE(parsed.has_value()) << name;
    EXPECT_EQ(parsed->stacked, role);
    EXPECT_EQ(parsed->layer, 12);
    EXPECT_EQ(parsed->expert, 7);
  }
  EXPECT_EQ(per_expert_tensor_name(Role::FfnGateExps, 3, 5), "blk.3.ffn_gate.5.weight");
  for (const char* name : {"blk.3.ffn_gate.weight", "blk.3.ffn_gate_exps.weight", "blk.3.attn_q.5.weight",
                           "blk.3.ffn_gate.x.weight", "blk.3.ffn_gate.-1.weight", "blk.ffn_gate.5.weight",
                           "blk.3.ffn_gate.5.bias", "ffn_gate.5.weight", "blk.3.ffn_gate.5", "blk.3.ffn_gate.05.weight",
                           "blk.3.ffn_gate.-0.weight", "blk.03.ffn_gate.5.weight", "blk.3.ffn_gate.99999999999999999999.weight"})
    EXPECT_FALSE(parse_per_expert_tensor_name(name).has_value()) << name;
}

// An older Mixtral file is refused with the command that fixes it; that command's file holds the
// stacked file's tensors byte for byte, so it computes the same.
TEST(StackExperts, StackingRestoresTheStackedTensorsByteForByte) {
  const std::string stacked = tiny("tiny-mixtral");
  const std::string split = per_expert_copy(stacked, "mixtral-per-expert");
  EXPECT_NE(open_error(split).find("flexinfer stack-experts"), std::string::npos) << open_error(split);
  const std::string restacked = test::scratch_path("mixtral-restacked.gguf");
  const test::CommandResult run = test::run_flexinfer({"stack-experts", split, "-o", restacked});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("expert tensors stacked into"), std::string::npos) << run.out;
  EXPECT_FALSE(std::filesystem::exists(restacked + ".partial"));
  EXPECT_EQ(open_error(restacked), "(opened)");

  const GgufFile original = GgufFile::open(stacked), result = GgufFile::open(restacked);
  const std::vector<uint8_t> original_bytes = test::read_bytes(stacked), result_bytes = test::read_bytes(restacked);
  ASSERT_EQ(result.tensors().all().size(), original.tensors().all().size());
  for (const TensorInfo& tensor : original.tensors().all()) {
    const TensorInfo* copy = result.tensors().find(tensor.name);
    ASSERT_NE(copy, nullptr) << tensor.name;
    EXPECT_EQ(copy->type, tensor.type) << tensor.name;
    EXPECT_EQ(copy->shape, tensor.shape) << tensor.name;
    ASSERT_EQ(copy->bytes, tensor.bytes) << tensor.name;
    EXPECT_EQ(0, std::memcmp(result_bytes.data() + copy->file_offset, original_bytes.data() + tensor.file_offset, tensor.bytes))
        << tensor.name;
  }
  std::map<std::string, std::string> original_metadata, result_metadata;
  for (const auto& [key, value] : original.metadata()) original_metadata[key] = value.summary(1000);
  for (const auto& [key, value] : result.metadata()) result_metadata[key] = value.summary(1000);
  EXPECT_EQ(result_metadata, original_metadata);
}

TEST(StackExperts, WhatCannotBeStackedIsRefusedAndNothingIsLeftBehind) {
  const std::string stacked = tiny("tiny-mixtral");
  const std::string output = test::scratch_path("mixtral-refused.gguf");
  const std::string split = per_expert_copy(stacked, "mixtral-in-place");
  const GgufFile stacked_file = GgufFile::open(stacked);
  const TensorInfo& gate = *stacked_file.tensors().find("blk.0.ffn_gate_exps.weight");
  const auto experts = static_cast<int64_t>(gate.shape[2]);
  const auto layers = static_cast<int64_t>(stacked_file.get_uint("llama.block_count").value());
  const std::vector<uint64_t> gate_shape{gate.shape[0], gate.shape[1]};
  std::vector<std::string> downs_of_layer_1;
  for (int64_t e = 0; e < experts; ++e) downs_of_layer_1.push_back(per_expert_tensor_name(Role::FfnDownExps, 1, e));
  const struct {
    std::string input;
    std::string says;
  } cases[] = {
      {per_expert_copy(stacked, "mixtral-expert-missing", {3, false}), "tensor 'blk.1.ffn_down.3.weight' is missing"},
      {test::edited_model(split, "mixtral-projection-missing", {{}, {}, downs_of_layer_1, {}}),
       "tensor 'blk.1.ffn_down.0.weight' is missing"},
      {test::edited_model(split, "mixtral-expert-past",
                          {{}, {}, {}, {{per_expert_tensor_name(Role::FfnGateExps, 0, experts), gate.type, gate_shape}}}),
       "is past the model's " + std::to_string(experts) + " experts"},
      {test::edited_model(split, "mixtral-layer-past",
                          {{}, {}, {}, {{per_expert_tensor_name(Role::FfnGateExps, layers, 0), gate.type, gate_shape}}}),
       "is past the model's " + std::to_string(layers) + " layers"},
      {per_expert_copy(stacked, "mixtral-odd-type", {-1, true}),
       "tensor 'blk.1.ffn_down.2.weight' is F32 [512, 256] but 'blk.1.ffn_down.0.weight' is F16 [512, 256]"},
      {stacked, "no experts stored one tensor each"},
      {tiny("tiny-llama3"), "a model without experts"},
  };
  for (const auto& c : cases) {
    std::string error;
    try {
      stack_experts(c.input, output);
    } catch (const Error& e) {
      error = e.what();
    }
    EXPECT_NE(error.find(c.says), std::string::npos) << error;
    EXPECT_FALSE(std::filesystem::exists(output)) << c.says;
    EXPECT_FALSE(std::filesystem::exists(output + ".partial")) << c.says;
  }
  // The input as the output, or as the temporary file beside it: refused before anything is written.
  const std::string like_partial = test::scratch_path("mixtral-like.gguf.partial");
  std::filesystem::copy_file(split, like_partial);
  for (const auto& [input, target] : {std::pair{split, split}, std::pair{like_partial, test::scratch_path("mixtral-like.gguf")}}) {
    const uintmax_t size = std::filesystem::file_size(input);
    const test::CommandResult refused = test::run_flexinfer({"stack-experts", input, "-o", target});
    EXPECT_EQ(refused.exit_code, 1) << target;
    EXPECT_NE(refused.err.find("writing it would overwrite the input"), std::string::npos) << refused.err;
    EXPECT_EQ(std::filesystem::file_size(input), size) << input;
  }
  const test::CommandResult directory = test::run_flexinfer({"stack-experts", split, "-o", test::scratch_dir()});
  EXPECT_EQ(directory.exit_code, 1);
  EXPECT_NE(directory.err.find("exists and is not a regular file"), std::string::npos) << directory.err;
  // Asked to stop (Ctrl-C): the copy ends between two pieces, and nothing is left behind.
  const std::atomic<bool> stop{true};
  std::string stopped;
  try {
    stack_experts(split, output, &stop);
  } catch (const Error& e) {
    stopped = e.what();
  }
  EXPECT_NE(stopped.find("interrupted"), std::string::npos) << stopped;
  EXPECT_FALSE(std::filesystem::exists(output));
  EXPECT_FALSE(std::filesystem::exists(output + kUnfinishedSuffix));
  // A read that fails halfway through the copy: the partial file is removed, no output appears.
  const GgufFile split_file = GgufFile::open(split);
  const std::string fault = "eio@" + std::to_string(split_file.tensors().all().back().file_offset);
  const test::CommandResult failed =
      test::run_flexinfer({"stack-experts", split, "-o", output}, {{"FLEXINFER_INJECT_IO_FAULT=" + fault}});
  EXPECT_EQ(failed.exit_code, 1);
  EXPECT_NE(failed.err.find("Input/output error"), std::string::npos) << failed.err;
  EXPECT_FALSE(std::filesystem::exists(output));
  EXPECT_FALSE(std::filesystem::exists(output + ".partial"));
  const test::CommandResult no_output = test::run_flexinfer({"stack-experts", split});
  EXPECT_EQ(no_output.exit_code, 2);
  EXPECT_NE(no_output.err.find("option '-o' is required"), std::string::npos) << no_output.err;
}

}  // namespace
}  // namespace fi
