#pragma once
// A read-only file descriptor with exact-size positional reads.
#include <cstddef>
#include <cstdint>
#include <string>

namespace fi {

class ReadFile {
 public:
  explicit ReadFile(const std::string& path);
  ~ReadFile();
  ReadFile(const ReadFile&) = delete;
  ReadFile& operator=(const ReadFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  int fd() const { return fd_; }
  // Reads exactly `bytes` at `offset`; retries short reads and EINTR, throws on EOF or I/O error.
  void read_exact(void* destination, uint64_t bytes, uint64_t offset) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace fi
