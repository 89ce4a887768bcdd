#pragma once
// Direct-read bandwidth of the disk holding a file, by queue depth and request size: what the
// streaming pipeline can expect, and the settings it should use.
#include <cstdint>
#include <string>
#include <vector>

namespace fi {

struct DiskRate {
  int queue_depth = 0;
  uint64_t request_bytes = 0;
  double GBps = 0.0;
};

// Reads up to `bytes_per_point` of `path` (O_DIRECT, io_uring; rotating through the file so no
// point re-reads what the drive may have just cached) for every queue depth x request size.
std::vector<DiskRate> measure_disk(const std::string& path, const std::vector<int>& queue_depths,
                                   const std::vector<uint64_t>& request_sizes, uint64_t bytes_per_point);

// Of the settings within 5% of the fastest, the one with the most bytes in flight.
DiskRate choose_disk_setting(const std::vector<DiskRate>& rates);

}  // namespace fi
