#include "io/disk_probe.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <sys/mman.h>
#include <memory>

#include "io/async_reader.h"
#include "io/error.h"

namespace fi {

namespace {

// Destination memory as the engine's staging slots have it: huge pages, locked (direct reads into
// ordinary 4 KiB pages measured a third slower on the development machine's virtual disk).
class ProbeBuffer {
 public:
  explicit ProbeBuffer(uint64_t bytes) : bytes_(align_up(bytes, 2u << 20)) {
    void* data = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) fail("cannot allocate %llu bytes for the disk probe", static_cast<unsigned long long>(bytes_));
    data_ = static_cast<uint8_t*>(data);
    ::madvise(data_, bytes_, MADV_HUGEPAGE);
    ::mlock(data_, bytes_);  // best effort, as for the engine's arena
  }
  ~ProbeBuffer() { ::munmap(data_, bytes_); }
  ProbeBuffer(const ProbeBuffer&) = delete;
  ProbeBuffer& operator=(const ProbeBuffer&) = delete;
  uint8_t* get() const { return data_; }

 private:
  uint64_t bytes_;
  uint8_t* data_ = nullptr;
};

struct FileSpan {
  uint64_t offset = 0;  // 4 KiB-aligned
  uint64_t bytes = 0;   // 4 KiB-aligned
};

// Direct-read bandwidth over `spans`, cycling through them until at least `bytes` are read.
double measure_disk_spans(const std::string& path, int queue_depth, uint64_t request_bytes,
                          const std::vector<FileSpan>& spans, uint64_t bytes) {
  ReaderOptions options{IoBackend::Uring, queue_depth, request_bytes};
  const auto reader = AsyncReader::open(path, options);
  if (!reader->direct()) fail("%s: O_DIRECT is not available on this file system; cannot measure the disk", path.c_str());
  std::vector<FileSpan> chunks;
  for (const FileSpan& span : spans)
    for (uint64_t at = 0; at < span.bytes; at += request_bytes)
      chunks.push_back({span.offset + at, std::min(request_bytes, span.bytes - at)});
  if (chunks.empty()) fail("internal: nothing to measure");
  // Reads land in turn across a buffer larger than the caches, like the engine's staging ring (on
  // a virtual disk, reading into a small cache-resident buffer measured 1.5x faster).
  const uint64_t positions = std::max<uint64_t>(static_cast<uint64_t>(queue_depth), (256ull << 20) / request_bytes);
  const ProbeBuffer buffer(positions * request_bytes);
  size_t next = 0;
  uint64_t submitted_bytes = 0;
  auto submit = [&] {
    const FileSpan& chunk = chunks[next % chunks.size()];
    reader->submit({buffer.get() + (next % positions) * request_bytes, chunk.offset, chunk.bytes, next});
    ++next;
    submitted_bytes += chunk.bytes;
  };
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < queue_depth; ++i) submit();
  while (reader->outstanding() > 0) {
    reader->wait();
    if (submitted_bytes < bytes) submit();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(reader->bytes_read()) / seconds / 1e9;
}

// The same reading `bytes` from `start_offset` on, wrapping at the end of the file.
double measure_disk_once(const std::string& path, int queue_depth, uint64_t request_bytes, uint64_t bytes,
                         uint64_t start_offset) {
  const uint64_t usable = align_down(DirectFile(path, false).size(), request_bytes);
  if (usable < request_bytes * static_cast<uint64_t>(queue_depth))
    fail("%s: too small to measure the disk (needs at least %llu bytes)", path.c_str(),
         static_cast<unsigned long long>(request_bytes * static_cast<uint64_t>(queue_depth)));
  const uint64_t start = align_down(start_offset, request_bytes) % usable;
  std::vector<FileSpan> spans = {{start, usable - start}};
  if (start > 0) spans.push_back({0, start});
  return measure_disk_spans(path, queue_depth, request_bytes, spans, bytes);
}

}  // namespace

std::vector<DiskRate> measure_disk(const std::string& path, const std::vector<int>& queue_depths,
                                   const std::vector<uint64_t>& request_sizes, uint64_t bytes_per_point) {
  // The bandwidth of shared and cloud disks drifts over seconds: every point is measured in three
  // passes spread over the run, and its median kept.
  constexpr int kPasses = 3;
  std::vector<DiskRate> rates;
  for (uint64_t request_bytes : request_sizes)
    for (int depth : queue_depths) rates.push_back({depth, request_bytes, 0.0});
  std::vector<std::vector<double>> samples(rates.size());
  uint64_t offset = 0;  // carried on, so each point reads bytes the previous did not
  for (int pass = 0; pass < kPasses; ++pass)
    for (size_t i = 0; i < rates.size(); ++i) {
      samples[i].push_back(measure_disk_once(path, rates[i].queue_depth, rates[i].request_bytes, bytes_per_point / kPasses, offset));
      offset += bytes_per_point / kPasses;
    }
  for (size_t i = 0; i < rates.size(); ++i) {
    std::sort(samples[i].begin(), samples[i].end());
    rates[i].GBps = samples[i][kPasses / 2];
  }
  return rates;
}

DiskRate choose_disk_setting(const std::vector<DiskRate>& rates) {
  if (rates.empty()) fail("internal: no disk measurements");
  double fastest = 0.0;
  for (const DiskRate& rate : rates) fastest = std::max(fastest, rate.GBps);
  // Among the settings as fast as the best, the most bytes in flight: they cost no memory (reads
  // land in the staging slots) and keep the disk busy while compute threads hold both cores and
  // the I/O thread waits to be scheduled (measured: 32 MiB in flight decoded 12% faster than 8 MiB
  // at the same raw bandwidth on the 2-core development machine).
  const DiskRate* choice = nullptr;
  for (const DiskRate& rate : rates) {
    if (rate.GBps < 0.95 * fastest) continue;
    const uint64_t in_flight = rate.request_bytes * static_cast<uint64_t>(rate.queue_depth);
    if (!choice || in_flight > choice->request_bytes * static_cast<uint64_t>(choice->queue_depth)) choice = &rate;
  }
  return *choice;
}

}  // namespace fi
