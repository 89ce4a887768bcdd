// The host-memory planner on the shapes it exists for (7b, 13b, 70b), from tensor tables alone:
// never over budget, the weight budget filled, streaming balanced over layers, and a clear error
// below the minimum. Budget strings as users write them.
#include <gtest/gtest.h>

#include <algorithm>

#include "io/direct_file.h"
#include "io/error.h"
#include "planner/budget.h"
#include "planner/plan.h"
#include "model_tables.h"

namespace fi {
namespace {

constexpr uint64_t kMiB = 1ull << 20, kGiB = 1ull << 30;

using test::Shape;

const Shape kShapes[] = {
    {"7b_q4_0", 4096, 11008, 32, 4096, 32000, TensorType::Q4_0, TensorType::Q6_K},
    {"13b_q4_k", 5120, 13824, 40, 5120, 32000, TensorType::Q4_K, TensorType::Q6_K},
    {"70b_q4_k", 8192, 28672, 80, 1024, 32000, TensorType::Q4_K, TensorType::Q6_K},
};

// A llama tensor table and the planner input the engine builds from it.
struct Model {
  TensorTable table;
  PlanInput input;
};

Model make_model(const Shape& s) {
  Model model{test::model_table(s), {}};
  const TensorTable& table = model.table;
  model.input.units = test::model_units(table, s.layers);
  for (uint64_t l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    model.input.always_resident.push_back(table.find(p + "attn_norm.weight"));
    model.input.always_resident.push_back(table.find(p + "ffn_norm.weight"));
  }
  model.input.always_resident.push_back(table.find("output_norm.weight"));
  model.input.fixed = {{"KV cache", 2 * s.layers * 512 * s.kv * 2}, {"scratch", 60 * kMiB}, {"runtime", 30 * kMiB}};
  return model;
}

class PlanTest : public ::testing::TestWithParam<Shape> {};

TEST_P(PlanTest, WithoutBudgetEverythingIsResident) {
  const Model model = make_model(GetParam());
  const Plan plan = make_plan(model.input);
  EXPECT_FALSE(plan.streams());
  EXPECT_EQ(plan.resident_bytes(), plan.weight_bytes());
  EXPECT_EQ(plan.read_bytes_per_token(), 0u);
}

TEST_P(PlanTest, BudgetsFromTheMinimumToEverythingAreKeptFilledAndBalanced) {
  Model model = make_model(GetParam());
  const Plan unlimited = make_plan(model.input);
  const uint64_t everything = unlimited.host_bytes();
  const uint64_t minimum = unlimited.minimum_host_bytes;
  ASSERT_LT(minimum, everything / 4) << "a streaming plan needs far less than the whole model";
  for (int step = 0; step <= 20; ++step) {
    const uint64_t budget = minimum + (everything + 64 * kMiB - minimum) * static_cast<uint64_t>(step) / 20;
    model.input.host_budget = budget;
    const Plan plan = make_plan(model.input);
    SCOPED_TRACE("budget " + format_bytes(budget));
    EXPECT_LE(plan.host_bytes(), budget);
    const uint64_t weight_budget = budget - plan.fixed_bytes();
    if (plan.streams()) {
      EXPECT_GE(plan.resident_span_bytes() + plan.staging_bytes(), weight_budget * 98 / 100) << "weight budget filled";
      uint64_t least = UINT64_MAX, most = 0;
      for (size_t u = 0; u + 1 < plan.units.size(); ++u) {
        least = std::min(least, plan.units[u].streamed_bytes());
        most = std::max(most, plan.units[u].streamed_bytes());
      }
      EXPECT_LE(most, least + least / 20) << "streamed bytes per layer within 5%";
      EXPECT_GE(plan.depth, 2);
      for (const PlanUnit& unit : plan.units) {
        EXPECT_LE(unit.read_bytes(), plan.slot_bytes);
        for (const ReadSpan& span : unit.reads) {
          EXPECT_EQ(span.file_offset % kDirectAlignment, 0u);
          EXPECT_EQ(span.bytes % kDirectAlignment, 0u);
        }
        // Every streamed row lies inside the unit's reads, at its slot offset.
        for (const PlanMatrix& m : unit.matrices) {
          EXPECT_EQ(m.resident_rows % 8 == 0 || m.resident_rows == m.rows, true);
          if (m.streamed_bytes() == 0) continue;
          const uint64_t begin = m.tensor->file_offset + m.resident_bytes();
          bool covered = false;
          for (const ReadSpan& span : unit.reads)
            if (begin >= span.file_offset && m.tensor->file_offset + m.bytes() <= span.file_offset + span.bytes) {
              covered = true;
              EXPECT_EQ(m.slot_offset, span.slot_offset + (begin - span.file_offset));
            }
          EXPECT_TRUE(covered) << m.tensor->name;
        }
      }
    } else {
      EXPECT_EQ(plan.resident_bytes(), plan.weight_bytes());
    }
  }
}

TEST_P(PlanTest, AttentionStaysResidentBeforeTheFeedForward) {
  Model model = make_model(GetParam());
  const Plan unlimited = make_plan(model.input);
  for (int eighth = 1; eighth < 8; ++eighth) {
    model.input.host_budget =
        unlimited.minimum_host_bytes + (unlimited.host_bytes() - unlimited.minimum_host_bytes) * static_cast<uint64_t>(eighth) / 8;
    const Plan plan = make_plan(model.input);
    ASSERT_TRUE(plan.streams());
    // In preservation order, only the one tensor where the budget ran out is split: everything
    // before it is resident, everything after it streams.
    for (const PlanUnit& unit : plan.units) {
      bool ran_out = false;
      for (const PlanMatrix& m : unit.matrices) {
        if (ran_out) {
          EXPECT_EQ(m.resident_rows, 0u) << m.tensor->name;
        }
        if (m.resident_rows < m.rows) ran_out = true;
      }
    }
    if (eighth >= 4) {
      for (size_t i = 0; i < 4; ++i)
        EXPECT_EQ(plan.units[0].matrices[i].resident_rows, plan.units[0].matrices[i].rows) << plan.units[0].matrices[i].tensor->name;
    }
  }
}

TEST_P(PlanTest, BelowTheMinimumIsAClearError) {
  Model model = make_model(GetParam());
  const uint64_t minimum = make_plan(model.input).minimum_host_bytes;
  model.input.host_budget = minimum - 1;
  try {
    make_plan(model.input);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("minimum of " + format_bytes(minimum)), std::string::npos) << error.what();
  }
  model.input.host_budget = minimum;
  EXPECT_LE(make_plan(model.input).host_bytes(), minimum);
}

INSTANTIATE_TEST_SUITE_P(Shapes, PlanTest, ::testing::ValuesIn(kShapes),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Plan, SevenBillionAtTwoGigabytesStreamsAboutHalf) {
  Model model = make_model(kShapes[0]);
  model.input.host_budget = 2 * kGiB;
  const Plan plan = make_plan(model.input);
  EXPECT_EQ(plan.depth, 3);
  EXPECT_GT(plan.read_bytes_per_token(), plan.weight_bytes() * 4 / 10);
  EXPECT_LT(plan.read_bytes_per_token(), plan.weight_bytes() * 6 / 10);
}

// Qwen3-30B-A3B in Q4_K (48 layers of 128 experts, 8 chosen): stacked experts [2048, 768, 128].
Model moe_model() {
  std::vector<TensorInfo> tensors;
  uint64_t offset = 4096 + 704;
  auto add = [&](const std::string& name, TensorType type, std::vector<uint64_t> shape) {
    TensorInfo t;
    t.name = name;
    t.type = type;
    t.n_dims = static_cast<uint32_t>(shape.size());
    uint64_t elements = 1;
    for (size_t i = 0; i < shape.size(); ++i) {
      t.shape[i] = shape[i];
      elements *= shape[i];
    }
    for (size_t i = shape.size(); i < 4; ++i) t.shape[i] = 1;
    t.file_offset = offset;
    t.bytes = row_bytes(type, elements);
    offset = align_up(offset + t.bytes, 32);
    tensors.push_back(t);
  };
  constexpr uint64_t dim = 2048, layers = 48, experts = 128, width = 768, vocab = 151936;
  add("token_embd.weight", TensorType::Q4_K, {dim, vocab});
  for (uint64_t l = 0; l < layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", TensorType::F32, {dim});
    add(p + "attn_q.weight", TensorType::Q4_K, {dim, 4096});
    add(p + "attn_k.weight", TensorType::Q4_K, {dim, 512});
    add(p + "attn_v.weight", TensorType::Q6_K, {dim, 512});
    add(p + "attn_output.weight", TensorType::Q4_K, {4096, dim});
    add(p + "ffn_norm.weight", TensorType::F32, {dim});
    add(p + "ffn_gate_inp.weight", TensorType::F32, {dim, experts});
    add(p + "ffn_gate_exps.weight", TensorType::Q4_K, {dim, width, experts});
    add(p + "ffn_up_exps.weight", TensorType::Q4_K, {dim, width, experts});
    add(p + "ffn_down_exps.weight", TensorType::Q6_K, {width, dim, experts});
  }
  add("output_norm.weight", TensorType::F32, {dim});
  add("output.weight", TensorType::Q6_K, {dim, vocab});
  Model model{TensorTable(std::move(tensors)), {}};
  const TensorTable& table = model.table;
  model.input.experts.count = experts;
  model.input.experts.used = 8;
  for (uint64_t l = 0; l < layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    PlanInput::Unit unit{"blk." + std::to_string(l), {}};
    for (const char* name : {"attn_k", "attn_v", "attn_q", "attn_output", "ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps",
                             "ffn_down_exps"})
      unit.matrices.push_back(table.find(p + name + ".weight"));
    model.input.units.push_back(unit);
    model.input.experts.layers.push_back(
        {table.find(p + "ffn_gate_exps.weight"), table.find(p + "ffn_up_exps.weight"), table.find(p + "ffn_down_exps.weight")});
    model.input.always_resident.push_back(table.find(p + "attn_norm.weight"));
    model.input.always_resident.push_back(table.find(p + "ffn_norm.weight"));
  }
  model.input.units.push_back({"output", {table.find("output.weight")}});
  model.input.always_resident.push_back(table.find("output_norm.weight"));
  model.input.fixed = {{"KV cache", 400 * kMiB}, {"scratch", 60 * kMiB}, {"runtime", 30 * kMiB}};
  return model;
}

TEST(Plan, ExpertsFillWhatTheDensePartsLeaveAndEveryBudgetIsKept) {
  Model model = moe_model();
  const Plan unlimited = make_plan(model.input);
  EXPECT_FALSE(unlimited.caches_experts());
  for (uint64_t budget : {2 * kGiB, 4 * kGiB, 8 * kGiB, 16 * kGiB}) {
    SCOPED_TRACE(format_bytes(budget));
    model.input.host_budget = budget;
    const Plan plan = make_plan(model.input);
    ASSERT_TRUE(plan.caches_experts());
    EXPECT_LE(plan.host_bytes(), budget);
    // What is left is less than one more slot.
    EXPECT_LT(budget - plan.host_bytes(), plan.expert_cache.slot_bytes + 64 * kMiB);
    EXPECT_GE(plan.expert_cache.slots, minimum_expert_slots(plan.expert_cache.experts));
    EXPECT_EQ(plan.weight_bytes(), unlimited.weight_bytes());
    // Dense parts first: resident whole from 4 GB on; no unit holds an expert tensor.
    if (budget >= 4 * kGiB) {
      EXPECT_FALSE(plan.streams());
    }
    for (const PlanUnit& unit : plan.units)
      for (const PlanMatrix& m : unit.matrices) EXPECT_EQ(m.tensor->name.find("_exps"), std::string::npos);
  }
  // A token's experts: 8 of 128 in each of 48 layers.
  model.input.host_budget = 8 * kGiB;
  const Plan plan = make_plan(model.input);
  EXPECT_EQ(plan.expert_cache.used_bytes_per_token(), plan.expert_cache.experts.total_bytes() / 16);
  EXPECT_GT(plan.expert_cache.uniform_read_bytes_per_token(), plan.expert_cache.used_bytes_per_token() / 2);
}

TEST(Plan, AnMoeBudgetBelowTheMinimumNamesTheExpertSlots) {
  Model model = moe_model();
  model.input.host_budget = 256 * kMiB;
  try {
    make_plan(model.input);
    FAIL() << "a budget below the minimum was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("16 expert slots"), std::string::npos) << error.what();
  }
}

TEST(Budget, ParsesUnits) {
  EXPECT_EQ(parse_byte_size("512M"), 512 * kMiB);
  EXPECT_EQ(parse_byte_size("6G"), 6 * kGiB);
  EXPECT_EQ(parse_byte_size("6g"), 6 * kGiB);
  EXPECT_EQ(parse_byte_size("6.5GiB"), 6 * kGiB + kGiB / 2);
  EXPECT_EQ(parse_byte_size("1.5GB"), 1500000000u);
  EXPECT_EQ(parse_byte_size("4096"), 4096u);
  EXPECT_EQ(parse_byte_size("2KiB"), 2048u);
  EXPECT_EQ(parse_byte_size("1T"), 1ull << 40);
  for (const char* bad : {"", "G", "-1G", "1.2.3G", "12X", "1 G", "1GG", "99999999999T", "nan"})
    EXPECT_FALSE(parse_byte_size(bad).has_value()) << bad;
}

}  // namespace
}  // namespace fi
