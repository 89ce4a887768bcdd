#pragma once
// How much host memory a run may take when the user gives no budget: what the kernel says is
// available, or what the memory cgroup the process runs in leaves, whichever is less.
#include <cstdint>
#include <optional>
#include <string>

namespace fi {

struct MemoryLimits {
  uint64_t mem_available = 0;            // /proc/meminfo MemAvailable
  std::optional<uint64_t> cgroup_limit;  // the tightest memory limit of the cgroup and its ancestors
  uint64_t cgroup_in_use = 0;            // the cgroup's usage less its page cache (reclaimable)
};

// Reads /proc/meminfo and the process's memory cgroup (v2 unified, or v1's memory controller).
// `root` prefixes every path (tests give a directory laid out like / with fake files).
MemoryLimits read_memory_limits(const std::string& root = "");

struct AvailableMemory {
  uint64_t bytes = 0;
  std::string why;  // "80% of the 19.6 GiB MemAvailable", "the memory cgroup's 4 GiB limit less 120 MiB in use"
};
// 80% of MemAvailable (room for the system), or 85% of what the cgroup's limit leaves when that is
// less (its kernel memory and page cache count too).
AvailableMemory available_host_memory(const MemoryLimits& limits);

}  // namespace fi
