#include "io/disk_probe.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>

#include "io/async_reader.h"
#include "io/error.h"

namespace fi {

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
  const uint64_t buffer_bytes = request_bytes * static_cast<uint64_t>(queue_depth);
  std::unique_ptr<uint8_t, decltype(&std::free)> buffer(
      static_cast<uint8_t*>(std::aligned_alloc(kDirectAlignment, buffer_bytes)), &std::free);
  if (!buffer) fail("cannot allocate %llu bytes for the disk probe", static_cast<unsigned long long>(buffer_bytes));
  size_t next = 0;
  uint64_t submitted_bytes = 0;
  auto submit = [&](uint64_t slot) {
    const FileSpan& chunk = chunks[next++ % chunks.size()];
    reader->submit({buffer.get() + slot * request_bytes, chunk.offset, chunk.bytes, slot});
    submitted_bytes += chunk.bytes;
  };
  const auto start = std::chrono::steady_clock::now();
  for (int slot = 0; slot < queue_depth; ++slot) submit(static_cast<uint64_t>(slot));
  while (reader->outstanding() > 0) {
    const uint64_t slot = reader->wait();
    if (submitted_bytes < bytes) submit(slot);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(reader->bytes_read()) / seconds / 1e9;
}

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
  const DiskRate* choice = nullptr;
  for (const DiskRate& rate : rates) {
    if (rate.GBps < 0.95 * fastest) continue;
    const uint64_t cost = rate.request_bytes * static_cast<uint64_t>(rate.queue_depth);
    if (!choice || cost < choice->request_bytes * static_cast<uint64_t>(choice->queue_depth)) choice = &rate;
  }
  return *choice;
}

}  // namespace fi
