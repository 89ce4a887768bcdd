// Linked into the binaries carried to other machines (FLEXINFER_PORTABLE, tools/build-gpu.sh),
// which take libstdc++ in statically. Its std::string code pulls in std::random_device, which calls
// arc4random: glibc 2.36, newer than the GPU machines' images may have. Defined here from the
// kernel's getrandom (glibc 2.25), it leaves the binaries needing glibc 2.35 at most.
#include <sys/random.h>

#include <cerrno>
#include <chrono>
#include <cstdint>

extern "C" uint32_t arc4random() noexcept {
  uint32_t value = 0;
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (::getrandom(&value, sizeof(value), 0) == static_cast<ssize_t>(sizeof(value))) return value;
    if (errno != EINTR) break;
  }
  // A sandbox without the call: the clock still differs run to run, which is all seeds need.
  const auto ticks = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return static_cast<uint32_t>(ticks ^ (ticks >> 32));
}
