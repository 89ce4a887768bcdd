#include "io/direct_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "io/error.h"
#include "io/fault_injection.h"

namespace fi {

DirectFile::DirectFile(const std::string& path, bool want_direct) : path_(path) {
  if (want_direct) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (fd_ >= 0) {
      direct_ = true;
    } else {
      direct_refusal_ = std::strerror(errno);
    }
  }
  if (fd_ < 0) fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail("%s: cannot open: %s", path.c_str(), std::strerror(errno));
  struct stat info {};
  if (::fstat(fd_, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd_);
    fail("%s: not a regular file", path.c_str());
  }
  size_ = static_cast<uint64_t>(info.st_size);
}

DirectFile::~DirectFile() {
  if (fd_ >= 0) ::close(fd_);
}

uint64_t DirectFile::expected_bytes(uint64_t offset, uint64_t bytes) const {
  if (offset >= size_) return 0;
  return std::min(bytes, size_ - offset);
}

void DirectFile::read(uint8_t* destination, uint64_t offset, uint64_t bytes) const {
  const uint64_t wanted = expected_bytes(offset, bytes);
  uint64_t done = 0;
  while (done < wanted) {
    const uint64_t restart = restart_point(done);
    uint64_t length = std::min<uint64_t>(bytes - restart, 1ull << 30);
    const InjectedFault fault = take_injected_fault(offset + restart, length);
    if (fault == InjectedFault::ShortRead) length = std::max<uint64_t>(kDirectAlignment, align_down(length / 2, kDirectAlignment));
    ssize_t got;
    if (fault == InjectedFault::IoError || fault == InjectedFault::Interrupted) {
      got = -1;
      errno = fault == InjectedFault::IoError ? EIO : EINTR;
    } else {
      got = ::pread(fd_, destination + restart, length, static_cast<off_t>(offset + restart));
    }
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      fail_read(path_, offset + restart, length, errno);
    }
    done = std::max(done, progress(offset, restart, static_cast<uint64_t>(got), wanted));
  }
}

uint64_t DirectFile::progress(uint64_t offset, uint64_t restart, uint64_t got, uint64_t wanted) const {
  if (got == 0) fail_shrunk(path_, offset + restart);
  if (direct_ && got % kDirectAlignment != 0 && restart + got < wanted) fail_shrunk(path_, offset + restart + got);
  return restart + got;
}

std::vector<uint8_t> read_file_range(const std::string& path, uint64_t offset, uint64_t bytes) {
  const DirectFile file(path, false);
  if (file.expected_bytes(offset, bytes) != bytes) fail_shrunk(path, offset);
  std::vector<uint8_t> range(bytes);
  file.read(range.data(), offset, bytes);
  return range;
}

void DirectFile::drop_cached(uint64_t offset, uint64_t bytes) const {
  if (!direct_) ::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(bytes), POSIX_FADV_DONTNEED);
}

void fail_read(const std::string& path, uint64_t offset, uint64_t bytes, int error_number) {
  fail("%s: read of %llu bytes at offset %llu failed: %s", path.c_str(), static_cast<unsigned long long>(bytes),
       static_cast<unsigned long long>(offset), std::strerror(error_number));
}

void fail_shrunk(const std::string& path, uint64_t offset) {
  fail("%s: unexpected end of file at offset %llu (the file shrank while in use?)", path.c_str(),
       static_cast<unsigned long long>(offset));
}

}  // namespace fi
