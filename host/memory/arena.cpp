#include "host/memory/arena.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>

#include "io/direct_file.h"
#include "io/error.h"
#include "planner/budget.h"

namespace fi {

HostArena::HostArena(std::optional<uint64_t> capacity, bool lock) : capacity_(capacity) {
  if (!capacity) return;
  const uint64_t bytes = align_up(*capacity, kDirectAlignment);
  reservation_ = PageBuffer(bytes);
  if (!lock || bytes == 0) return;
  // The soft limit may be raised up to the hard one without privileges (further with them).
  rlimit limit{};
  if (::getrlimit(RLIMIT_MEMLOCK, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < bytes) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max == RLIM_INFINITY || limit.rlim_max >= bytes ? bytes : limit.rlim_max;
    if (::setrlimit(RLIMIT_MEMLOCK, &raised) != 0) {
      raised.rlim_cur = raised.rlim_max = RLIM_INFINITY;  // privileged: lift both
      ::setrlimit(RLIMIT_MEMLOCK, &raised);
    }
  }
  if (::mlock(reservation_.data(), bytes) == 0) {
    locked_ = true;
  } else {
    lock_refusal_ = strprintf("cannot lock %s of host memory (%s; raise 'ulimit -l'); running unlocked, the "
                              "kernel may swap weights out",
                              format_bytes(bytes).c_str(), std::strerror(errno));
  }
}

uint8_t* HostArena::allocate(uint64_t bytes, uint64_t alignment, const char* what) {
  if (alignment == 0 || alignment > kDirectAlignment || (alignment & (alignment - 1)))
    fail("internal: arena alignment %llu", static_cast<unsigned long long>(alignment));
  if (!capacity_) {
    separate_.emplace_back(static_cast<size_t>(align_up(std::max<uint64_t>(bytes, 1), kDirectAlignment)));
    used_ += bytes;
    return separate_.back().as<uint8_t>();
  }
  const uint64_t begin = align_up(used_, alignment);
  if (begin + bytes > *capacity_ || begin + bytes < begin)
    fail("internal: host memory plan exceeded: %s for %s does not fit in the %s budget (%s used)",
         format_bytes(bytes).c_str(), what, format_bytes(*capacity_).c_str(), format_bytes(used_).c_str());
  used_ = begin + bytes;
  return reservation_.as<uint8_t>() + begin;
}

}  // namespace fi
