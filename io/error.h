#pragma once
// One exception type for every user-facing failure: its message is the one line the CLI prints.
#include <stdexcept>
#include <string>

namespace fi {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Formats like printf so error sites stay one line.
[[noreturn]] void fail(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string strprintf(const char* format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace fi
