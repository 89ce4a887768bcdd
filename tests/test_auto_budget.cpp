// Budgets chosen from the machine when the user gives none: the memory available from
// /proc/meminfo and the process's memory cgroup (v1 and v2, read from fake file trees), and a
// default context shortened to fit a budget.
#include <filesystem>
#include <fstream>

#include "host/engine/engine.h"
#include "host/engine/host_model.h"
#include "host/engine/system_memory.h"
#include "io/error.h"
#include "test_support.h"

namespace fi {
namespace {

void write_file(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

std::string fake_root(const std::string& name) {
  const std::string root = test::scratch_path("root-" + name);
  write_file(root + "/proc/meminfo", "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   10000000 kB\n");
  return root;
}

TEST(AutoBudget, MemAvailableWithoutACgroupLimit) {
  const std::string root = fake_root("none");
  write_file(root + "/proc/self/cgroup", "0::/user.slice\n");
  write_file(root + "/sys/fs/cgroup/user.slice/memory.max", "max\n");
  const MemoryLimits limits = read_memory_limits(root);
  EXPECT_EQ(limits.mem_available, 10000000ull * 1024);
  EXPECT_FALSE(limits.cgroup_limit.has_value());
  const AvailableMemory available = available_host_memory(limits);
  EXPECT_EQ(available.bytes, 10000000ull * 1024 / 10 * 8);
  EXPECT_NE(available.why.find("80%"), std::string::npos) << available.why;
}

TEST(AutoBudget, CgroupV2LimitOfAnAncestorLessWhatIsInUse) {
  const std::string root = fake_root("v2");
  write_file(root + "/proc/self/cgroup", "0::/jobs/run\n");
  write_file(root + "/sys/fs/cgroup/jobs/memory.max", "4294967296\n");
  write_file(root + "/sys/fs/cgroup/jobs/run/memory.max", "max\n");
  write_file(root + "/sys/fs/cgroup/jobs/run/memory.current", "1073741824\n");
  write_file(root + "/sys/fs/cgroup/jobs/run/memory.stat", "anon 268435456\nfile 805306368\n");
  const MemoryLimits limits = read_memory_limits(root);
  ASSERT_TRUE(limits.cgroup_limit.has_value());
  EXPECT_EQ(*limits.cgroup_limit, 4ull << 30);
  EXPECT_EQ(limits.cgroup_in_use, 256ull << 20) << "page cache is reclaimable";
  const AvailableMemory available = available_host_memory(limits);
  EXPECT_EQ(available.bytes, ((4ull << 30) - (256ull << 20)) / 20 * 17);
  EXPECT_NE(available.why.find("memory cgroup"), std::string::npos) << available.why;
}

TEST(AutoBudget, CgroupV1MemoryControllerOfAHybridSystem) {
  const std::string root = fake_root("v1");
  write_file(root + "/proc/self/cgroup", "5:cpu,cpuacct:/\n4:memory:/batch/job7\n0::/\n");
  write_file(root + "/sys/fs/cgroup/memory/batch/job7/memory.limit_in_bytes", "2147483648\n");
  write_file(root + "/sys/fs/cgroup/memory/batch/job7/memory.usage_in_bytes", "536870912\n");
  write_file(root + "/sys/fs/cgroup/memory/batch/job7/memory.stat", "cache 1\ntotal_cache 268435456\n");
  write_file(root + "/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
  const MemoryLimits limits = read_memory_limits(root);
  ASSERT_TRUE(limits.cgroup_limit.has_value());
  EXPECT_EQ(*limits.cgroup_limit, 2ull << 30);
  EXPECT_EQ(limits.cgroup_in_use, 256ull << 20);
}

TEST(AutoBudget, UnreadableFilesMeanNoLimitAndTheMachinesRam) {
  const MemoryLimits limits = read_memory_limits(test::scratch_path("root-empty"));
  EXPECT_EQ(limits.mem_available, 0u);
  EXPECT_FALSE(limits.cgroup_limit.has_value());
  const uint64_t ram = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
  EXPECT_EQ(available_host_memory(limits).bytes, ram / 10 * 8);
}

// A default context whose KV cache would not fit the budget is shortened, with a notice; one the
// user gave is refused as before.
TEST(AutoBudget, DefaultContextShortensToFitTheBudget) {
  const std::string path = test::generated_model("auto-ctx", {256, 4, 8, 8, 768, 4096, 0, 10000.0, false}, WeightScheme::Q4_0);
  ThreadPool pool(2);
  HostModelOptions small;
  small.model.context = 512;
  const uint64_t budget = HostModel::load(path, pool, small)->plan().minimum_host_bytes + (1 << 20);
  EngineOptions options{path, 2, 0};
  options.host_budget = budget;
  Engine engine(options);
  EXPECT_LE(engine.forward().context(), 512 * 2);
  EXPECT_GE(engine.forward().context(), 512);
  ASSERT_FALSE(engine.placement().empty());
  EXPECT_NE(engine.placement().front().find("context shortened"), std::string::npos) << engine.placement().front();
  options.context = 4096;
  EXPECT_THROW(Engine{options}, Error);
}

}  // namespace
}  // namespace fi
