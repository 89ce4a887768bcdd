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
