#include "io/file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <fcntl.h>
#include <sys/file.h>
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

UnfinishedFile::UnfinishedFile(std::string path) : path_(std::move(path)), writing_path_(path_ + kUnfinishedSuffix) {
  struct stat target {};
  if (::stat(path_.c_str(), &target) == 0 && !S_ISREG(target.st_mode))
    fail("%s: exists and is not a regular file; give the path of the file to write", path_.c_str());
  // The unfinished file is locked while this run owns it: a second run writing the same path is
  // refused instead of writing into the first one's file; an unlocked one was left by a run that died.
  for (int attempt = 0; fd_ < 0; ++attempt) {
    if (attempt == 8) fail("%s: keeps changing while it is being claimed; is another run writing it?", writing_path_.c_str());
    const int fd = ::open(writing_path_.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno == ELOOP) {  // a link left there: removed, what it points to untouched
        ::unlink(writing_path_.c_str());
        continue;
      }
      fail("%s: cannot create: %s", writing_path_.c_str(), std::strerror(errno));
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int error = errno;
      ::close(fd);
      if (error == EWOULDBLOCK)
        fail("%s: another run is writing '%s' now; wait for it or give another path", writing_path_.c_str(),
             path_.c_str());
      fail("%s: cannot lock it: %s", writing_path_.c_str(), std::strerror(error));
    }
    // The file locked must still be the one under the name (a run finishing renames it away).
    struct stat locked {}, named {};
    if (::fstat(fd, &locked) != 0 || ::lstat(writing_path_.c_str(), &named) != 0 || locked.st_ino != named.st_ino ||
        locked.st_dev != named.st_dev) {
      ::close(fd);
      continue;
    }
    if (!S_ISREG(locked.st_mode) || ::ftruncate(fd, 0) != 0) {
      ::close(fd);
      fail("%s: cannot start it afresh: %s", writing_path_.c_str(),
           S_ISREG(locked.st_mode) ? std::strerror(errno) : "not a regular file");
    }
    fd_ = fd;
  }
}

UnfinishedFile::~UnfinishedFile() {
  if (!completed_) ::unlink(writing_path_.c_str());
  ::close(fd_);  // releases the lock, after the name is gone
}

uint64_t UnfinishedFile::complete() {
  if (::fsync(fd_) != 0) fail("%s: cannot flush it to the disk: %s", writing_path_.c_str(), std::strerror(errno));
  struct stat info {};
  if (::fstat(fd_, &info) != 0) fail("%s: cannot read its size: %s", writing_path_.c_str(), std::strerror(errno));
  if (std::rename(writing_path_.c_str(), path_.c_str()) != 0)
    fail("%s: cannot rename it to '%s': %s", writing_path_.c_str(), path_.c_str(), std::strerror(errno));
  completed_ = true;
  return static_cast<uint64_t>(info.st_size);
}

}  // namespace fi
