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
#include "io/log.h"

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

namespace {

// Removes `path` (an entry, not what a link points to); gone already is fine.
void remove_entry(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    fail("%s: cannot remove it: %s", path.c_str(), std::strerror(errno));
}

bool same_file(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

}  // namespace

UnfinishedFile::UnfinishedFile(std::string path) : path_(std::move(path)), writing_path_(path_ + kUnfinishedSuffix) {
  struct stat target {};
  if (::stat(path_.c_str(), &target) == 0 && !S_ISREG(target.st_mode))
    fail("%s: exists and is not a regular file; give the path of the file to write", path_.c_str());
  // This run creates the unfinished file and locks it while it writes: a second run given the same
  // path finds it locked and is refused. One left by a run that died is unlocked: it is removed (not
  // emptied: it may have another name) and this run creates its own.
  for (int attempt = 0; fd_ < 0; ++attempt) {
    if (attempt == 8)
      fail("%s: keeps changing while it is being claimed; is another run writing it?", writing_path_.c_str());
    bool created = true;
    int fd = ::open(writing_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno != EEXIST) fail("%s: cannot create: %s", writing_path_.c_str(), std::strerror(errno));
      struct stat left {};
      if (::lstat(writing_path_.c_str(), &left) != 0) continue;
      if (S_ISLNK(left.st_mode)) {  // removed, what it points to untouched
        remove_entry(writing_path_);
        continue;
      }
      if (!S_ISREG(left.st_mode))
        fail("%s: exists and is not a regular file; remove it or give another path", writing_path_.c_str());
      fd = ::open(writing_path_.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) continue;
      created = false;
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int error = errno;
      if (error == EWOULDBLOCK) {
        ::close(fd);
        fail("%s: another run is writing '%s' now; wait for it or give another path", writing_path_.c_str(),
             path_.c_str());
      }
      // A file system without locks (some network and FUSE mounts): written unguarded, as before locks.
      if (error != ENOLCK && error != EOPNOTSUPP) {
        ::close(fd);
        fail("%s: cannot lock it: %s", writing_path_.c_str(), std::strerror(error));
      }
      log_warning("%s: this file system cannot lock it; a second run given the same path would not be refused",
                  writing_path_.c_str());
    }
    // The file locked must still be the one under the name (a run finishing renames it away).
    struct stat locked {}, named {};
    const bool still_named =
        ::fstat(fd, &locked) == 0 && ::lstat(writing_path_.c_str(), &named) == 0 && same_file(locked, named);
    if (still_named && !created) remove_entry(writing_path_);  // under the lock: no other run takes it meanwhile
    if (!still_named || !created) {
      ::close(fd);
      continue;
    }
    fd_ = fd;
  }
}

UnfinishedFile::~UnfinishedFile() {
  struct stat mine {}, named {};
  if (!completed_ && ::fstat(fd_, &mine) == 0 && ::lstat(writing_path_.c_str(), &named) == 0 && same_file(mine, named))
    ::unlink(writing_path_.c_str());
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
