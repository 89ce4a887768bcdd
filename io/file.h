#pragma once
// Files: a read-only descriptor with exact-size positional reads, and a file written under another
// name until it is whole.
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

// What a file being written (make-model, stack-experts) is called until it is whole: its name + this.
inline constexpr const char* kUnfinishedSuffix = ".partial";

// A file written at path + kUnfinishedSuffix and given its name only when whole, flushed to the disk
// first: an error, an interrupt or a crash never leaves a truncated file under the name, and a file
// already there stays as it was until then.
class UnfinishedFile {
 public:
  // Refuses (Error) a path that exists and is not a regular file (a directory, a device), and a path
  // another run is writing now, before anything is written; starts afresh an unfinished file an
  // earlier run left, and removes a link left there, not what it points to.
  explicit UnfinishedFile(std::string path);
  ~UnfinishedFile();  // removes the unfinished file unless complete() ran
  UnfinishedFile(const UnfinishedFile&) = delete;
  UnfinishedFile& operator=(const UnfinishedFile&) = delete;

  const std::string& writing_path() const { return writing_path_; }  // where to write it
  // Flushes the written file to the disk and renames it to the path; returns its size in bytes.
  uint64_t complete();

 private:
  std::string path_, writing_path_;
  int fd_ = -1;  // holds the lock on the unfinished file
  bool completed_ = false;
};

}  // namespace fi
