#include "io/file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/error.h"

namespace fi {

ReadFile::ReadFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail("%s: cannot open: %s", path.c_str(), std::strerror(errno));
  struct stat info {};
  if (::fstat(fd_, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd_);
    fail("%s: not a regular file", path.c_str());
  }
  size_ = static_cast<uint64_t>(info.st_size);
}

ReadFile::~ReadFile() {
  if (fd_ >= 0) ::close(fd_);
}

void ReadFile::read_exact(void* destination, uint64_t bytes, uint64_t offset) const {
  auto* out = static_cast<char*>(destination);
  while (bytes > 0) {
    const size_t chunk = bytes > (1ull << 30) ? (1ull << 30) : static_cast<size_t>(bytes);
    const ssize_t got = ::pread(fd_, out, chunk, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      fail("%s: read of %llu bytes at offset %llu failed: %s", path_.c_str(),
           static_cast<unsigned long long>(chunk), static_cast<unsigned long long>(offset),
           std::strerror(errno));
    }
    if (got == 0)
      fail("%s: unexpected end of file at offset %llu (file shrank?)", path_.c_str(),
           static_cast<unsigned long long>(offset));
    out += got;
    bytes -= static_cast<uint64_t>(got);
    offset += static_cast<uint64_t>(got);
  }
}

}  // namespace fi
