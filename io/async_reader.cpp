#include "io/async_reader.h"

#include <liburing.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "io/error.h"
#include "io/fault_injection.h"
#include "io/log.h"

namespace fi {

std::optional<IoBackend> parse_io_backend(const std::string& name) {
  if (name == "auto") return IoBackend::Auto;
  if (name == "uring") return IoBackend::Uring;
  if (name == "pread") return IoBackend::Pread;
  if (name == "mmap") return IoBackend::Mmap;
  return std::nullopt;
}

const char* io_backend_name(IoBackend backend) {
  switch (backend) {
    case IoBackend::Auto: return "auto";
    case IoBackend::Uring: return "uring";
    case IoBackend::Pread: return "pread";
    case IoBackend::Mmap: return "mmap";
  }
  return "?";
}

std::string AsyncReader::describe() const {
  if (backend_ == IoBackend::Mmap) return "mmap (page cache)";
  return strprintf("%s, %s, queue depth %d, %llu KiB requests", io_backend_name(backend_),
                   direct() ? "O_DIRECT" : "buffered", options_.queue_depth,
                   static_cast<unsigned long long>(options_.request_bytes >> 10));
}

namespace {

// The shallowest ring tried when a deeper one does not fit the locked-memory limit.
constexpr int kFallbackQueueDepth = 32;

void check_request(const DirectFile& file, const ReadRequest& request) {
  if (request.offset % kDirectAlignment || request.bytes % kDirectAlignment ||
      reinterpret_cast<uintptr_t>(request.destination) % kDirectAlignment || request.bytes == 0)
    fail("internal: read of %llu bytes at offset %llu into %p is not 4 KiB-aligned (%s)",
         static_cast<unsigned long long>(request.bytes), static_cast<unsigned long long>(request.offset),
         static_cast<void*>(request.destination), file.path().c_str());
}

void warn_once(const std::string& message) {
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true)) log_warning("%s", message.c_str());
}

// One piece of a request, at most request_bytes long.
struct Chunk {
  uint32_t parent = 0;
  uint8_t* destination = nullptr;
  uint64_t offset = 0;
  uint64_t bytes = 0;   // aligned length asked for
  uint64_t wanted = 0;  // bytes that exist in the file
  uint64_t done = 0;
};

// Requests split into chunks, with slots reused once a request is returned.
class RequestTable {
 public:
  uint32_t add(uint64_t tag, uint32_t chunks) {
    uint32_t id;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
    } else {
      id = static_cast<uint32_t>(parents_.size());
      parents_.emplace_back();
    }
    parents_[id] = {tag, chunks};
    ++outstanding_;
    return id;
  }
  // Counts a finished chunk; true when it was the request's last.
  bool chunk_done(uint32_t id) { return --parents_[id].remaining == 0; }
  uint64_t finish(uint32_t id) {
    free_.push_back(id);
    --outstanding_;
    return parents_[id].tag;
  }
  uint64_t outstanding() const { return outstanding_; }

 private:
  struct Parent {
    uint64_t tag = 0;
    uint32_t remaining = 0;
  };
  std::vector<Parent> parents_;
  std::vector<uint32_t> free_;
  uint64_t outstanding_ = 0;
};

std::vector<Chunk> split(const DirectFile& file, const ReadRequest& request, uint64_t request_bytes, uint32_t parent) {
  std::vector<Chunk> chunks;
  for (uint64_t at = 0; at < request.bytes; at += request_bytes) {
    Chunk chunk;
    chunk.parent = parent;
    chunk.destination = request.destination + at;
    chunk.offset = request.offset + at;
    chunk.bytes = std::min(request_bytes, request.bytes - at);
    chunk.wanted = file.expected_bytes(chunk.offset, chunk.bytes);
    chunks.push_back(chunk);
  }
  return chunks;
}

uint32_t chunk_count(const ReadRequest& request, uint64_t request_bytes) {
  return static_cast<uint32_t>((request.bytes + request_bytes - 1) / request_bytes);
}

class UringReader final : public AsyncReader {
 public:
  UringReader(std::unique_ptr<DirectFile> file, const ReaderOptions& options, io_uring ring)
      : AsyncReader(std::move(file), IoBackend::Uring, options), ring_(ring) {}

  ~UringReader() override {
    // Reads still in flight write into memory their owner is about to free: let them land first.
    land_in_flight();
    io_uring_queue_exit(&ring_);
  }

  void abandon() override {
    // Prepared entries the kernel has not taken yet still point at valid memory: send them now so
    // that they land here, not after the memory has been reused.
    if (unsubmitted_ > 0 && !broken_) {
      int result;
      do {
        result = io_uring_submit(&ring_);
      } while (result == -EINTR || result == -EAGAIN);
      if (result >= 0) unsubmitted_ -= static_cast<unsigned>(result);
      if (result < 0 || unsubmitted_ > 0) {
        broken_ = true;
        broken_reason_ = "io_uring could not take back reads after a failure";
      }
    }
    // Reads the kernel may still complete keep their records: a broken reader is not used again.
    if (!land_in_flight()) return;
    backlog_.clear();
    finished_.clear();
    active_.clear();
    free_active_.clear();
    table_ = RequestTable();
  }

  void register_memory(std::span<uint8_t> memory) override {
    if (!regions_.empty() || memory.empty()) return;
    // The kernel caps one registered buffer at 1 GiB.
    constexpr uint64_t kMaxRegion = 1ull << 30;
    std::vector<iovec> regions;
    for (uint64_t at = 0; at < memory.size(); at += kMaxRegion)
      regions.push_back({memory.data() + at, static_cast<size_t>(std::min<uint64_t>(kMaxRegion, memory.size() - at))});
    const int result = io_uring_register_buffers(&ring_, regions.data(), static_cast<unsigned>(regions.size()));
    if (result < 0) {
      warn_once(strprintf("io_uring could not register the staging buffers (%s); using ordinary reads",
                          std::strerror(-result)));
      return;
    }
    regions_ = std::move(regions);
  }

  void submit(const ReadRequest& request) override {
    check_request(*file_, request);
    if (broken_) fail("%s: %s", file_->path().c_str(), broken_reason_.c_str());
    const uint32_t parent = table_.add(request.tag, chunk_count(request, options_.request_bytes));
    for (const Chunk& chunk : split(*file_, request, options_.request_bytes, parent)) backlog_.push_back(chunk);
    // Into the kernel now, not at the next wait(): the disk works while the caller computes.
    pump();
  }

  uint64_t outstanding() const override { return table_.outstanding() + finished_.size(); }

  uint64_t wait() override {
    if (broken_) fail("%s: %s", file_->path().c_str(), broken_reason_.c_str());
    while (finished_.empty()) {
      pump();
      if (!finished_.empty()) break;  // requests entirely past the end of the file finish at once
      if (in_flight_ == 0) fail("internal: waiting for a read when none was submitted");
      io_uring_cqe* cqe = nullptr;
      const int result = io_uring_wait_cqe(&ring_, &cqe);
      if (result == -EINTR) continue;
      if (result < 0) fail("%s: io_uring wait failed: %s", file_->path().c_str(), std::strerror(-result));
      unsigned head;
      unsigned seen = 0;
      std::exception_ptr failure;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        try {
          complete(static_cast<uint32_t>(io_uring_cqe_get_data64(cqe)), cqe->res);
        } catch (...) {
          if (!failure) failure = std::current_exception();
        }
      }
      io_uring_cq_advance(&ring_, seen);
      if (failure) std::rethrow_exception(failure);
    }
    const uint64_t tag = finished_.front();
    finished_.pop_front();
    return tag;
  }

 private:
  void complete(uint32_t id, int result) {
    --in_flight_;
    Chunk& chunk = active_[id];
    free_active_.push_back(id);
    const uint64_t restart = file_->restart_point(chunk.done);
    const uint64_t asked = chunk.bytes - restart;
    switch (take_injected_fault(chunk.offset + restart, asked)) {
      case InjectedFault::IoError: result = -EIO; break;
      case InjectedFault::Interrupted: result = -EINTR; break;
      case InjectedFault::ShortRead:
        if (result > static_cast<int>(kDirectAlignment)) result = static_cast<int>(align_down(static_cast<uint64_t>(result) / 2, kDirectAlignment));
        break;
      case InjectedFault::None: break;
    }
    if (result == -EINTR || result == -EAGAIN) {
      backlog_.push_front(chunk);
      return;
    }
    if (result < 0) fail_read(file_->path(), chunk.offset + restart, asked, -result);
    chunk.done = std::max(chunk.done, file_->progress(chunk.offset, restart, static_cast<uint64_t>(result), chunk.wanted));
    if (chunk.done < chunk.wanted) {
      backlog_.push_front(chunk);  // a short read: ask for the rest
      return;
    }
    bytes_read_ += chunk.wanted;
    if (table_.chunk_done(chunk.parent)) finished_.push_back(table_.finish(chunk.parent));
  }

  void pump() {
    unsigned prepared = 0;
    while (in_flight_ < options_.queue_depth && !backlog_.empty()) {
      Chunk chunk = backlog_.front();
      if (chunk.wanted == 0) {  // entirely past the end of the file
        backlog_.pop_front();
        if (table_.chunk_done(chunk.parent)) finished_.push_back(table_.finish(chunk.parent));
        continue;
      }
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (!sqe) break;
      backlog_.pop_front();
      uint32_t id;
      if (!free_active_.empty()) {
        id = free_active_.back();
        free_active_.pop_back();
      } else {
        id = static_cast<uint32_t>(active_.size());
        active_.emplace_back();
      }
      active_[id] = chunk;
      const uint64_t restart = file_->restart_point(chunk.done);
      uint8_t* destination = chunk.destination + restart;
      const auto length = static_cast<unsigned>(chunk.bytes - restart);
      const int region = region_of(destination, length);
      if (region >= 0)
        io_uring_prep_read_fixed(sqe, file_->fd(), destination, length, chunk.offset + restart, region);
      else
        io_uring_prep_read(sqe, file_->fd(), destination, length, chunk.offset + restart);
      io_uring_sqe_set_data64(sqe, id);
      ++in_flight_;
      ++prepared;
    }
    unsubmitted_ += prepared;
    if (unsubmitted_ == 0) return;
    int result;
    do {
      result = io_uring_submit(&ring_);
    } while (result == -EINTR || result == -EAGAIN);
    if (result < 0) {
      // The prepared entries stay in the ring pointing at their destinations: this reader must not
      // submit again.
      broken_ = true;
      broken_reason_ = std::string("io_uring submit failed: ") + std::strerror(-result);
      fail("%s: %s", file_->path().c_str(), broken_reason_.c_str());
    }
    unsubmitted_ -= static_cast<unsigned>(result);
  }

  // Waits for every read the kernel holds; their results no longer matter. False (and the reader
  // broken) when waiting itself fails.
  bool land_in_flight() {
    int in_kernel = in_flight_ - static_cast<int>(unsubmitted_);
    while (in_kernel > 0) {
      io_uring_cqe* cqe = nullptr;
      const int result = io_uring_wait_cqe(&ring_, &cqe);
      if (result == -EINTR) continue;
      if (result < 0) {
        broken_ = true;
        broken_reason_ = std::string("io_uring wait failed: ") + std::strerror(-result);
        return false;
      }
      io_uring_cqe_seen(&ring_, cqe);
      --in_kernel;
      --in_flight_;
    }
    return true;
  }

  int region_of(const uint8_t* destination, uint64_t length) const {
    for (size_t i = 0; i < regions_.size(); ++i) {
      const auto* base = static_cast<const uint8_t*>(regions_[i].iov_base);
      if (destination >= base && destination + length <= base + regions_[i].iov_len) return static_cast<int>(i);
    }
    return -1;
  }

  io_uring ring_;
  std::vector<iovec> regions_;
  RequestTable table_;
  std::deque<Chunk> backlog_;
  std::vector<Chunk> active_;  // in flight, indexed by the id in the submission
  std::vector<uint32_t> free_active_;
  std::deque<uint64_t> finished_;
  int in_flight_ = 0;          // prepared, submitted or not, and not completed
  unsigned unsubmitted_ = 0;   // prepared but not yet taken by the kernel
  bool broken_ = false;
  std::string broken_reason_;
};

// pread (or, for Mmap, memcpy out of a mapping) on a pool of threads: blocking reads in parallel
// give the disk its queue depth.
class ThreadReader final : public AsyncReader {
 public:
  ThreadReader(std::unique_ptr<DirectFile> file, IoBackend backend, const ReaderOptions& options)
      : AsyncReader(std::move(file), backend, options) {
    if (backend == IoBackend::Mmap && file_->size() > 0) {
      mapping_ = ::mmap(nullptr, file_->size(), PROT_READ, MAP_SHARED, file_->fd(), 0);
      if (mapping_ == MAP_FAILED) fail("%s: cannot map: %s", file_->path().c_str(), std::strerror(errno));
    }
    const int threads = std::clamp(options.queue_depth, 1, 32);
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }

  ~ThreadReader() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    work_ready_.notify_all();
    for (std::thread& worker : workers_) worker.join();
    if (mapping_ && mapping_ != MAP_FAILED) ::munmap(mapping_, file_->size());
  }

  void submit(const ReadRequest& request) override {
    check_request(*file_, request);
    {
      std::lock_guard lock(mutex_);
      const uint32_t parent = table_.add(request.tag, chunk_count(request, options_.request_bytes));
      for (const Chunk& chunk : split(*file_, request, options_.request_bytes, parent)) work_.push_back(chunk);
    }
    work_ready_.notify_all();
  }

  uint64_t outstanding() const override {
    std::lock_guard lock(mutex_);
    return table_.outstanding() + finished_.size();
  }

  void abandon() override {
    std::unique_lock lock(mutex_);
    work_.clear();
    done_.wait(lock, [&] { return reading_ == 0; });
    finished_.clear();
    table_ = RequestTable();
    error_ = nullptr;
  }

  uint64_t wait() override {
    std::unique_lock lock(mutex_);
    if (table_.outstanding() == 0 && finished_.empty()) fail("internal: waiting for a read when none was submitted");
    done_.wait(lock, [&] { return !finished_.empty() || error_; });
    if (error_) std::rethrow_exception(error_);
    const uint64_t tag = finished_.front();
    finished_.pop_front();
    return tag;
  }

 private:
  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      work_ready_.wait(lock, [&] { return stopping_ || !work_.empty(); });
      if (stopping_) return;
      const Chunk chunk = work_.front();
      work_.pop_front();
      ++reading_;
      lock.unlock();
      std::exception_ptr failure;
      try {
        read(chunk);
      } catch (...) {
        failure = std::current_exception();
      }
      lock.lock();
      --reading_;
      if (failure) {
        if (!error_) error_ = failure;
      } else {
        bytes_read_ += chunk.wanted;
        if (table_.chunk_done(chunk.parent)) finished_.push_back(table_.finish(chunk.parent));
      }
      done_.notify_all();
    }
  }

  void read(const Chunk& chunk) const {
    if (chunk.wanted == 0) return;
    if (mapping_) {
      std::memcpy(chunk.destination, static_cast<const uint8_t*>(mapping_) + chunk.offset, chunk.wanted);
      return;
    }
    file_->read(chunk.destination, chunk.offset, chunk.bytes);
    file_->drop_cached(chunk.offset, chunk.wanted);
  }

  void* mapping_ = nullptr;
  mutable std::mutex mutex_;
  std::condition_variable work_ready_, done_;
  std::deque<Chunk> work_;
  std::deque<uint64_t> finished_;
  RequestTable table_;
  std::exception_ptr error_;
  int reading_ = 0;  // chunks a worker is reading now
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace

std::unique_ptr<AsyncReader> AsyncReader::open(const std::string& path, const ReaderOptions& options) {
  if (options.queue_depth < 1 || options.queue_depth > kMaxQueueDepth)
    fail("I/O queue depth %d is outside 1..%d", options.queue_depth, kMaxQueueDepth);
  if (options.request_bytes < kDirectAlignment || options.request_bytes % kDirectAlignment || options.request_bytes > (64ull << 20))
    fail("I/O request size %llu must be a multiple of 4 KiB up to 64 MiB",
         static_cast<unsigned long long>(options.request_bytes));
  if (options.backend == IoBackend::Mmap)
    return std::make_unique<ThreadReader>(std::make_unique<DirectFile>(path, false), IoBackend::Mmap, options);

  // These variables stand in for file systems without O_DIRECT and kernels (or seccomp policies)
  // without io_uring, so the fallbacks can be exercised anywhere.
  const bool no_direct = std::getenv("FLEXINFER_NO_DIRECT_IO") != nullptr;
  const bool no_uring = std::getenv("FLEXINFER_NO_URING") != nullptr;
  auto file = std::make_unique<DirectFile>(path, !no_direct);
  if (!file->direct() && options.backend != IoBackend::Pread)
    warn_once(strprintf("%s: O_DIRECT is not available (%s); reading through the page cache", path.c_str(),
                        no_direct ? "FLEXINFER_NO_DIRECT_IO is set" : file->direct_refusal().c_str()));
  if (options.backend == IoBackend::Pread || (options.backend == IoBackend::Auto && !file->direct()))
    return std::make_unique<ThreadReader>(std::move(file), IoBackend::Pread, options);

  io_uring ring;
  ReaderOptions used = options;
  int result = no_uring ? -ENOSYS : io_uring_queue_init(static_cast<unsigned>(std::max(used.queue_depth, 2)), &ring, 0);
  // Kernels before 5.12 charge the rings to RLIMIT_MEMLOCK, often 64 KiB in containers: a deep
  // ring may not fit where a shallower one does.
  while (result == -ENOMEM && used.queue_depth > kFallbackQueueDepth) {
    used.queue_depth = std::max(used.queue_depth / 2, kFallbackQueueDepth);
    result = io_uring_queue_init(static_cast<unsigned>(used.queue_depth), &ring, 0);
  }
  if (result == 0) return std::make_unique<UringReader>(std::move(file), used, ring);
  if (options.backend == IoBackend::Uring)
    fail("io_uring is not available: %s (try --io pread)", std::strerror(-result));
  warn_once(strprintf("io_uring is not available (%s); reading with pread threads", std::strerror(-result)));
  return std::make_unique<ThreadReader>(std::move(file), IoBackend::Pread, options);
}

}  // namespace fi
