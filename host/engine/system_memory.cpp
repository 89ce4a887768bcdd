#include "host/engine/system_memory.h"

#include <unistd.h>

#include <charconv>
#include <fstream>
#include <sstream>
#include <string_view>

#include "planner/budget.h"

namespace fi {

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return in ? text.str() : std::string();
}

std::optional<uint64_t> parse_number(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  uint64_t value = 0;
  const auto parsed = std::from_chars(text.data(), text.data() + text.size(), value);
  if (parsed.ec != std::errc() || parsed.ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

// The value of `key` in a "key value" per line file (memory.stat, meminfo without the colon).
std::optional<uint64_t> field(const std::string& text, std::string_view key) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string name, value;
    words >> name >> value;
    if (!name.empty() && name.back() == ':') name.pop_back();
    if (name == key) return parse_number(value);
  }
  return std::nullopt;
}

// A cgroup's limit, usage and page cache from its directory (v2 or v1 file names); nullopt
// limit for "max" or v1's huge "unlimited" value.
struct CgroupMemory {
  std::optional<uint64_t> limit;
  uint64_t usage = 0, cache = 0;
};

CgroupMemory cgroup_memory(const std::string& directory, bool v2) {
  CgroupMemory memory;
  const std::string limit_text = read_text(directory + (v2 ? "/memory.max" : "/memory.limit_in_bytes"));
  if (const auto limit = parse_number(limit_text); limit && *limit < (1ull << 60)) memory.limit = limit;
  memory.usage = parse_number(read_text(directory + (v2 ? "/memory.current" : "/memory.usage_in_bytes"))).value_or(0);
  memory.cache = field(read_text(directory + "/memory.stat"), v2 ? "file" : "total_cache").value_or(0);
  return memory;
}

}  // namespace

MemoryLimits read_memory_limits(const std::string& root) {
  MemoryLimits limits;
  limits.mem_available = field(read_text(root + "/proc/meminfo"), "MemAvailable").value_or(0) * 1024;
  // /proc/self/cgroup: "0::/path" (v2) or "N:memory:/path" (v1, or a hybrid system's memory controller).
  std::istringstream lines(read_text(root + "/proc/self/cgroup"));
  std::string line, v1_path, v2_path;
  bool has_v2 = false;
  while (std::getline(lines, line)) {
    const size_t first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1), path = line.substr(second + 1);
    if (controllers.empty()) {
      has_v2 = true;
      v2_path = path;
    }
    std::istringstream names(controllers);
    std::string name;
    while (std::getline(names, name, ','))
      if (name == "memory") v1_path = path;
  }
  const bool v2 = v1_path.empty() && has_v2;
  const std::string base = root + (v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory");
  std::string path = v2 ? v2_path : v1_path;
  if (path.empty()) return limits;
  // The tightest limit on the way to the root counts; usage is the process's own cgroup's.
  bool own = true;
  for (;;) {
    const CgroupMemory memory = cgroup_memory(base + (path == "/" ? "" : path), v2);
    if (own) limits.cgroup_in_use = memory.usage > memory.cache ? memory.usage - memory.cache : 0;
    own = false;
    if (memory.limit && (!limits.cgroup_limit || *memory.limit < *limits.cgroup_limit)) limits.cgroup_limit = memory.limit;
    if (path.empty() || path == "/") break;
    const size_t slash = path.rfind('/');
    path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
  }
  return limits;
}

AvailableMemory available_host_memory(const MemoryLimits& limits) {
  AvailableMemory available;
  if (limits.mem_available > 0) {
    available.bytes = limits.mem_available / 10 * 8;
    available.why = "80% of the " + format_bytes(limits.mem_available) + " the kernel reports available";
  } else {
    // No /proc/meminfo (an unusual container): the machine's RAM is the best guess there is.
    const uint64_t ram = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
    available.bytes = ram / 10 * 8;
    available.why = "80% of the machine's " + format_bytes(ram) + " of RAM";
  }
  if (limits.cgroup_limit) {
    // Kernel memory, page tables and the binary's pages count against the cgroup too.
    const uint64_t room = *limits.cgroup_limit > limits.cgroup_in_use ? *limits.cgroup_limit - limits.cgroup_in_use : 0;
    if (room / 20 * 17 < available.bytes) {
      available.bytes = room / 20 * 17;
      available.why = "85% of the memory cgroup's " + format_bytes(*limits.cgroup_limit) + " limit less " +
                      format_bytes(limits.cgroup_in_use) + " in use";
    }
  }
  return available;
}

}  // namespace fi
