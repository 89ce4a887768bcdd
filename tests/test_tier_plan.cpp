// The three-tier planner on real shapes and stored machine profiles (tests/profiles/: a laptop
// with an 8 GB GPU, an H100 server): budgets kept, tiers filled in order and balanced, compute
// devices chosen by the cost model, and the speeds DESIGN.md's arithmetic predicts.
#include <gtest/gtest.h>

#include <algorithm>

#include "io/error.h"
#include "model_tables.h"
#include "planner/budget.h"
#include "planner/tier_plan.h"

namespace fi {
namespace {

constexpr uint64_t kMiB = 1ull << 20, kGiB = 1ull << 30;

const test::Shape k7bF16{"7b_f16", 4096, 11008, 32, 4096, 32000, TensorType::F16, TensorType::F16};
const test::Shape k13bF16{"13b_f16", 5120, 13824, 40, 5120, 32000, TensorType::F16, TensorType::F16};
const test::Shape k70bQ4K{"70b_q4_k", 8192, 28672, 80, 1024, 32000, TensorType::Q4_K, TensorType::Q6_K};
const test::Shape k7bQ40{"7b_q4_0", 4096, 11008, 32, 4096, 32000, TensorType::Q4_0, TensorType::Q6_K};
// Rows of sizes whose 8-row groups are not multiples of 256 bytes.
const test::Shape kOddQ40{"odd_q4_0", 4000, 10784, 32, 1000, 32000, TensorType::Q4_0, TensorType::Q8_0};

Profile stored_profile(const char* name) {
  return Profile::load(std::string(FLEXINFER_SOURCE_DIR) + "/tests/profiles/" + name + ".json");
}

struct Model {
  TensorTable table;
  TierInput input;
};

// 512 tokens of fp16 KV cache; fixed costs of the size the engine has for these shapes.
Model make_model(const test::Shape& s, uint64_t gpu_budget, std::optional<uint64_t> host_budget) {
  Model model{test::model_table(s), {}};
  model.input.units = test::model_units(model.table, s.layers);
  model.input.kv_bytes_per_layer = 2 * 512 * s.kv * 2;
  model.input.gpu_budget = gpu_budget;
  model.input.host_budget = host_budget;
  model.input.gpu_fixed = {{"activations", 200 * kMiB}, {"cuBLAS workspace", 32 * kMiB}};
  model.input.host_fixed = {{"runtime", 40 * kMiB}, {"scratch", 100 * kMiB}};
  return model;
}

// What every plan must satisfy, whatever the machine.
void expect_consistent(const TierPlan& plan, uint64_t row_group) {
  EXPECT_LE(plan.gpu_used(), plan.gpu_budget);
  if (plan.host_budget) {
    EXPECT_LE(plan.host_used(), *plan.host_budget);
  }
  for (const TierUnit& unit : plan.units) {
    EXPECT_EQ(unit.gpu_bytes() + unit.host_bytes() + unit.disk_bytes(), unit.bytes()) << unit.name;
    if (unit.decode == ComputeDevice::Cpu) {
      EXPECT_EQ(unit.gpu_bytes(), 0u) << unit.name << " decodes on the CPU";
    }
    EXPECT_EQ(unit.prefill, ComputeDevice::Gpu) << unit.name;
    EXPECT_LE(unit.host_bytes() + unit.disk_bytes(), plan.device_slot_bytes) << unit.name << " cannot prefill through a slot";
    for (const TierMatrix& m : unit.matrices) {
      EXPECT_LE(m.gpu_rows + m.host_rows, m.rows);
      // The GPU kernels read a block's fields up to 16 bytes at a time from where its rows land.
      EXPECT_EQ(m.device_offset % 256, 0u) << m.tensor->name;
      EXPECT_LE(m.device_offset + m.host_bytes() + m.disk_bytes(), plan.device_slot_bytes) << m.tensor->name;
      if (m.gpu_rows < m.rows) {
        EXPECT_EQ(m.gpu_rows % row_group, 0u) << m.tensor->name;
      }
      if (m.gpu_rows + m.host_rows < m.rows) {
        EXPECT_EQ((m.gpu_rows + m.host_rows) % row_group, 0u) << m.tensor->name;
      }
    }
  }
  // The CPU-decoded layers are one block at the end of the stack; the head decodes on the GPU.
  const auto first_cpu = std::find_if(plan.units.begin(), plan.units.end(),
                                      [](const TierUnit& u) { return u.decode == ComputeDevice::Cpu; });
  for (auto unit = first_cpu; unit < plan.units.end() - 1; ++unit) EXPECT_EQ(unit->decode, ComputeDevice::Cpu);
  EXPECT_EQ(plan.units.back().decode, ComputeDevice::Gpu);
  const bool visiting = std::any_of(plan.gpu_costs.begin(), plan.gpu_costs.end(),
                                    [](const PlanCost& cost) { return cost.what.find("visiting") != std::string::npos; });
  EXPECT_EQ(visiting, plan.cpu_layers() > 0) << "a CPU-decoded layer's KV cache visits the GPU to prefill";
  EXPECT_GT(plan.predicted_decode_tok_s, 0.0);
}

uint64_t total_bytes(const TierPlan& plan) {
  uint64_t bytes = 0;
  for (const TierUnit& unit : plan.units) bytes += unit.bytes();
  return bytes;
}

TEST(TierPlan, A7bF16InFourGigabytesOfAnH100SplitsDecodeBetweenPcieAndTheCpu) {
  // The issue's arithmetic: streaming the 9.5 GB that do not fit over 54 GB/s bounds decode at
  // ~5.7 tok/s; computing part of it on the CPU instead balances PCIe against memory, ~17 tok/s.
  const Model model = make_model(k7bF16, 4 * kGiB, std::nullopt);
  const TierPlan plan = make_tier_plan(model.input, stored_profile("h100-server"));
  expect_consistent(plan, model.input.row_group);
  EXPECT_GT(plan.cpu_layers(), 5);
  EXPECT_LT(plan.cpu_layers(), 28);
  EXPECT_GT(plan.predicted_decode_tok_s, 12.0);
  EXPECT_LT(plan.predicted_decode_tok_s, 22.0);
  EXPECT_TRUE(plan.bound == "pcie" || plan.bound == "cpu") << plan.bound;
  EXPECT_EQ(plan.disk_bytes_per_token(), 0u) << "no host budget: nothing streams from disk";
  EXPECT_GE(plan.gpu_used(), 4 * kGiB * 97 / 100) << "VRAM filled";
  EXPECT_GT(plan.predicted_decode_tok_s, 2.5 * 5.7) << "well above streaming everything over PCIe";
}

TEST(TierPlan, A13bF16WithFourGigabytesOfVramAndEightOfRamUsesAllThreeTiersAndIsDiskBound) {
  const Model model = make_model(k13bF16, 4 * kGiB, 8 * kGiB);
  const TierPlan plan = make_tier_plan(model.input, stored_profile("h100-server"));
  expect_consistent(plan, model.input.row_group);
  uint64_t gpu = 0, host = 0, disk = 0;
  for (const TierUnit& unit : plan.units) {
    gpu += unit.gpu_bytes();
    host += unit.host_bytes();
    disk += unit.disk_bytes();
  }
  // VRAM is filled: resident rows beside two device slots of a streamed layer each.
  EXPECT_GT(gpu, 2 * kGiB);
  EXPECT_GE(plan.gpu_used(), 4 * kGiB * 97 / 100);
  EXPECT_GT(host, 6 * kGiB);
  EXPECT_GT(disk, 10 * kGiB);
  EXPECT_EQ(plan.bound, "disk");
  // Disk-bound: the prediction is the disk's time for the bytes read.
  EXPECT_NEAR(plan.predicted_decode_tok_s, 1.6e9 / static_cast<double>(plan.disk_bytes_per_token()), 1e-6);
  // Balanced locking on the disk tier: every layer reads the same, except those with less left
  // after VRAM than that, which keep nothing in host memory.
  uint64_t most = 0;
  for (const TierUnit& unit : plan.units) most = std::max(most, unit.disk_bytes());
  for (const TierUnit& unit : plan.units)
    if (unit.disk_bytes() < most * 95 / 100) {
      EXPECT_EQ(unit.host_bytes(), 0u) << unit.name << " reads less from disk than the others yet holds host memory";
    }
}

TEST(TierPlan, A70bQ4KOnALaptopKeepsEveryBudgetAndStreamsTheRest) {
  const Model model = make_model(k70bQ4K, 7 * kGiB, 24 * kGiB);
  const TierPlan plan = make_tier_plan(model.input, stored_profile("laptop"));
  expect_consistent(plan, model.input.row_group);
  EXPECT_EQ(plan.bound, "disk");
  EXPECT_GT(plan.disk_bytes_per_token(), 5 * kGiB);
  EXPECT_GT(plan.host_used(), 23 * kGiB) << "host memory filled";
  EXPECT_GT(plan.gpu_used(), 6 * kGiB) << "VRAM filled";
}

TEST(TierPlan, AModelThatFitsInVramRunsThereEntirely) {
  const Model model = make_model(k7bQ40, 40 * kGiB, std::nullopt);
  const TierPlan plan = make_tier_plan(model.input, stored_profile("h100-server"));
  expect_consistent(plan, model.input.row_group);
  EXPECT_EQ(plan.cpu_layers(), 0);
  EXPECT_EQ(plan.upload_bytes_per_token(), 0u);
  EXPECT_EQ(plan.gpu_bytes_per_token(), total_bytes(plan));
  EXPECT_EQ(plan.bound, "gpu");
}

TEST(TierPlan, EveryBudgetPairIsKeptOnBothMachines) {
  for (const char* machine : {"laptop", "h100-server"})
    for (const test::Shape& shape : {k7bF16, k70bQ4K, kOddQ40})
      for (const uint64_t gpu : {2 * kGiB, 6 * kGiB, 20 * kGiB})
        for (const uint64_t host : {6 * kGiB, 16 * kGiB, 64 * kGiB}) {
          SCOPED_TRACE(std::string(machine) + " " + shape.name + " gpu " + format_bytes(gpu) + " host " + format_bytes(host));
          const Model model = make_model(shape, gpu, host);
          const TierPlan plan = make_tier_plan(model.input, stored_profile(machine));
          expect_consistent(plan, model.input.row_group);
        }
}

TEST(TierPlan, ImpossibleBudgetsAndProfilesWithoutAGpuAreClearErrors) {
  const Model tiny_gpu = make_model(k7bF16, 100 * kMiB, 8 * kGiB);
  try {
    make_tier_plan(tiny_gpu.input, stored_profile("h100-server"));
    FAIL() << "100 MiB of VRAM was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("no placement fits --gpu-mem"), std::string::npos) << error.what();
  }
  Profile cpu_only = stored_profile("h100-server");
  cpu_only.h2d_pinned_GBps = 0;
  const Model model = make_model(k7bF16, 4 * kGiB, 8 * kGiB);
  try {
    make_tier_plan(model.input, cpu_only);
    FAIL() << "a profile without GPU measurements was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("no GPU measurements"), std::string::npos) << error.what();
  }
}

TEST(TierPlan, StoredProfilesRoundTripWithTheirGpuNumbers) {
  const Profile profile = stored_profile("laptop");
  const Profile again = Profile::from_json(profile.to_json(), "round trip");
  EXPECT_EQ(again.h2d_pinned_GBps, 12.0);
  EXPECT_EQ(again.h2d_pageable_GBps, 6.0);
  EXPECT_EQ(again.d2h_GBps, 12.0);
  EXPECT_EQ(again.vram_read_GBps, 250.0);
  EXPECT_EQ(again.gpu_matvec_GBps, 220.0);
  EXPECT_TRUE(again.has_gpu());
}

TEST(TierPlan, CpuLayersAreWeighedAtTheirOwnTypesRate) {
  Profile profile = stored_profile("h100-server");
  const Model model = make_model(k7bF16, 4 * kGiB, std::nullopt);
  const TierPlan at_q4_0_rate = make_tier_plan(model.input, profile);
  // F16 at half the Q4_0 rate: each CPU layer costs twice the time, so fewer decode there.
  profile.cpu_matvec_GBps_by_type["F16"] = profile.cpu_matvec_GBps / 2;
  const TierPlan at_f16_rate = make_tier_plan(model.input, profile);
  expect_consistent(at_f16_rate, model.input.row_group);
  EXPECT_LT(at_f16_rate.cpu_layers(), at_q4_0_rate.cpu_layers());
  EXPECT_LT(at_f16_rate.predicted_decode_tok_s, at_q4_0_rate.predicted_decode_tok_s);
  double expected_cpu_seconds = 0.0;
  for (const TierUnit& unit : at_f16_rate.units)
    if (unit.decode == ComputeDevice::Cpu) expected_cpu_seconds += static_cast<double>(unit.bytes()) / 50e9;
  EXPECT_NEAR(at_f16_rate.seconds.cpu, expected_cpu_seconds, 1e-9);
}

TEST(TierPlan, PerTypeCpuRatesRoundTripAndBadOnesAreRefused) {
  Profile profile = stored_profile("laptop");
  profile.cpu_matvec_GBps_by_type = {{"F16", 21.5}, {"Q4_K", 9.25}};
  const Profile again = Profile::from_json(profile.to_json(), "round trip");
  EXPECT_EQ(again.cpu_matvec_GBps_for(TensorType::F16), 21.5);
  EXPECT_EQ(again.cpu_matvec_GBps_for(TensorType::Q4_K), 9.25);
  EXPECT_EQ(again.cpu_matvec_GBps_for(TensorType::Q6_K), profile.cpu_matvec_GBps) << "unmeasured types: the Q4_0 rate";
  for (const char* bad : {R"({"cpu_matvec_GBps_by_type": {"F16": -1}})", R"({"cpu_matvec_GBps_by_type": [1, 2]})",
                          R"({"cpu_matvec_GBps_by_type": {"F16": "fast"}})"})
    EXPECT_THROW(Profile::from_json(bad, "bad"), Error) << bad;
}

}  // namespace
}  // namespace fi
