#include "io/disk_probe.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>

#include "io/async_reader.h"
#include "io/error.h"

namespace fi {

std::vector<DiskRate> measure_disk(const std::string& path, const std::vector<int>& queue_depths,
                                   const std::vector<uint64_t>& request_sizes, uint64_t bytes_per_point) {
  std::vector<DiskRate> rates;
  uint64_t position = 0;  // carried across points, so each reads bytes the previous did not
  for (uint64_t request_bytes : request_sizes) {
    for (int depth : queue_depths) {
      ReaderOptions options{IoBackend::Uring, depth, request_bytes};
      const auto reader = AsyncReader::open(path, options);
      if (!reader->direct()) fail("%s: O_DIRECT is not available on this file system; cannot measure the disk", path.c_str());
      const uint64_t usable = align_down(reader->file().size(), request_bytes);
      if (usable < request_bytes * static_cast<uint64_t>(depth))
        fail("%s: too small to measure the disk (needs at least %llu bytes)", path.c_str(),
             static_cast<unsigned long long>(request_bytes * static_cast<uint64_t>(depth)));
      const uint64_t buffer_bytes = request_bytes * static_cast<uint64_t>(depth);
      std::unique_ptr<uint8_t, decltype(&std::free)> buffer(
          static_cast<uint8_t*>(std::aligned_alloc(kDirectAlignment, buffer_bytes)), &std::free);
      if (!buffer) fail("cannot allocate %llu bytes for the disk probe", static_cast<unsigned long long>(buffer_bytes));
      const uint64_t requests = std::max<uint64_t>(depth, bytes_per_point / request_bytes);
      auto next_offset = [&] {
        position = align_down(position, request_bytes);
        if (position + request_bytes > usable) position = 0;
        const uint64_t offset = position;
        position += request_bytes;
        return offset;
      };
      const auto start = std::chrono::steady_clock::now();
      uint64_t submitted = 0;
      for (int slot = 0; slot < depth; ++slot, ++submitted)
        reader->submit({buffer.get() + static_cast<uint64_t>(slot) * request_bytes, next_offset(), request_bytes,
                        static_cast<uint64_t>(slot)});
      for (uint64_t done = 0; done < requests; ++done) {
        const uint64_t slot = reader->wait();
        if (submitted < requests) {
          reader->submit({buffer.get() + slot * request_bytes, next_offset(), request_bytes, slot});
          ++submitted;
        }
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      rates.push_back({depth, request_bytes, static_cast<double>(reader->bytes_read()) / seconds / 1e9});
    }
  }
  return rates;
}

DiskRate choose_disk_setting(const std::vector<DiskRate>& rates) {
  if (rates.empty()) fail("internal: no disk measurements");
  double fastest = 0.0;
  for (const DiskRate& rate : rates) fastest = std::max(fastest, rate.GBps);
  const DiskRate* choice = nullptr;
  for (const DiskRate& rate : rates) {
    if (rate.GBps < 0.97 * fastest) continue;
    const uint64_t cost = rate.request_bytes * static_cast<uint64_t>(rate.queue_depth);
    if (!choice || cost < choice->request_bytes * static_cast<uint64_t>(choice->queue_depth)) choice = &rate;
  }
  return *choice;
}

}  // namespace fi
