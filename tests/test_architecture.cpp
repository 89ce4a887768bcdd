// The model description (io/architecture.h): its tables, the hyperparameters read from metadata,
// the binding of a file's tensors to roles, and the refusal of what the engine does not implement.
#include <cmath>
#include <set>

#include "host/model/model.h"
#include "io/architecture.h"
#include "io/error.h"
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

}  // namespace
}  // namespace fi
