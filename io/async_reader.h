#pragma once
// Asynchronous reads of a model file into caller-owned memory: io_uring with O_DIRECT and
// registered buffers where the kernel and file system allow it, else a pool of pread threads;
// `mmap` (copies out of a shared mapping, through the page cache) exists as a baseline.
//
// Requests take 4 KiB-aligned offsets, lengths and destinations (DirectFile), whatever the backend.
// One thread submits and waits; completions come back one request at a time, in any order.
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "io/direct_file.h"

namespace fi {

enum class IoBackend { Auto, Uring, Pread, Mmap };
std::optional<IoBackend> parse_io_backend(const std::string& name);
const char* io_backend_name(IoBackend backend);

// The most requests one reader keeps in flight.
inline constexpr int kMaxQueueDepth = 1024;

struct ReaderOptions {
  IoBackend backend = IoBackend::Auto;
  int queue_depth = 32;               // requests in flight (io_uring) or reading threads (pread)
  uint64_t request_bytes = 1ull << 20;  // larger reads are split into requests of this size
};

struct ReadRequest {
  uint8_t* destination = nullptr;
  uint64_t offset = 0;
  uint64_t bytes = 0;
  uint64_t tag = 0;  // returned by wait() when the whole request has arrived
};

class AsyncReader {
 public:
  virtual ~AsyncReader() = default;
  // Queues a read (split internally into requests of at most request_bytes) and starts it at once,
  // as far as the queue depth allows; never waits for it.
  virtual void submit(const ReadRequest& request) = 0;
  // Blocks until one submitted read has fully arrived and returns its tag. Throws Error on an I/O
  // error or a file that shrank.
  virtual uint64_t wait() = 0;
  // Reads submitted and not yet returned by wait().
  virtual uint64_t outstanding() const = 0;
  // Waits until no read can still write into memory (what the kernel or a reading thread holds
  // lands or fails), then forgets every submitted read: outstanding() is 0 and read errors are
  // cleared. After a failure, or before the destination memory is reused or freed. A reader whose
  // kernel interface itself failed (io_uring submit or wait) stays unusable: every later submit
  // and wait fails.
  virtual void abandon() = 0;
  // Memory that reads will land in, registered with the kernel once where the backend can use that.
  virtual void register_memory(std::span<uint8_t> memory) { (void)memory; }

  IoBackend backend() const { return backend_; }
  bool direct() const { return file_->direct(); }
  const DirectFile& file() const { return *file_; }
  std::string describe() const;
  uint64_t bytes_read() const { return bytes_read_.load(std::memory_order_relaxed); }

  // Opens `path` with the requested backend. Auto picks io_uring + O_DIRECT and falls back (saying
  // why once on stderr) to pread threads when either is unavailable.
  static std::unique_ptr<AsyncReader> open(const std::string& path, const ReaderOptions& options);

 protected:
  AsyncReader(std::unique_ptr<DirectFile> file, IoBackend backend, const ReaderOptions& options)
      : file_(std::move(file)), backend_(backend), options_(options) {}
  std::unique_ptr<DirectFile> file_;
  IoBackend backend_;
  ReaderOptions options_;
  std::atomic<uint64_t> bytes_read_{0};
};

}  // namespace fi
