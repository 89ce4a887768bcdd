#pragma once
// A model file opened for direct I/O (O_DIRECT, bypassing the page cache) where the file system
// allows it, else for ordinary buffered reads. Reads take 4 KiB-aligned offsets, lengths and
// destinations, so one code path serves both modes.
#include <cstdint>
#include <string>
#include <vector>

namespace fi {

constexpr uint64_t kDirectAlignment = 4096;

constexpr uint64_t align_down(uint64_t value, uint64_t alignment) { return value / alignment * alignment; }
constexpr uint64_t align_up(uint64_t value, uint64_t alignment) { return (value + alignment - 1) / alignment * alignment; }

class DirectFile {
 public:
  // want_direct: try O_DIRECT first; direct() tells whether it was granted.
  DirectFile(const std::string& path, bool want_direct);
  ~DirectFile();
  DirectFile(const DirectFile&) = delete;
  DirectFile& operator=(const DirectFile&) = delete;

  const std::string& path() const { return path_; }
  int fd() const { return fd_; }
  bool direct() const { return direct_; }
  uint64_t size() const { return size_; }
  const std::string& direct_refusal() const { return direct_refusal_; }

  // Bytes of [offset, offset + bytes) that exist in the file as it was opened: a read must deliver
  // exactly these (the rest of an aligned span past the end of the file is left as it is).
  uint64_t expected_bytes(uint64_t offset, uint64_t bytes) const;
  // Blocking aligned read of expected_bytes(offset, bytes); retries EINTR, EAGAIN and short reads;
  // throws on I/O errors and on a file that shrank.
  void read(uint8_t* destination, uint64_t offset, uint64_t bytes) const;
  // Where a read that has `done` bytes so far continues: direct reads restart at an aligned
  // position (re-reading a little; short reads are rare).
  uint64_t restart_point(uint64_t done) const { return direct_ ? align_down(done, kDirectAlignment) : done; }
  // The bytes done after a read at `restart` (relative to `offset`) returned `got` > -1 bytes of
  // the `wanted`; throws when the file shrank: nothing read, or a direct read cut short of an
  // aligned length inside the range that should exist (retrying would read the same).
  uint64_t progress(uint64_t offset, uint64_t restart, uint64_t got, uint64_t wanted) const;
  // Drops the range from the page cache (buffered mode), so streamed weights do not pile up there.
  void drop_cached(uint64_t offset, uint64_t bytes) const;

 private:
  std::string path_;
  int fd_ = -1;
  bool direct_ = false;
  uint64_t size_ = 0;
  std::string direct_refusal_;
};

// Bytes [offset, offset + bytes) of `path` at any alignment, through the page cache: for small
// ranges read once (norms, RoPE frequency factors).
std::vector<uint8_t> read_file_range(const std::string& path, uint64_t offset, uint64_t bytes);

// The message for a failed read, shared by every backend.
[[noreturn]] void fail_read(const std::string& path, uint64_t offset, uint64_t bytes, int error_number);
[[noreturn]] void fail_shrunk(const std::string& path, uint64_t offset);

}  // namespace fi
