#pragma once
// Command-line options of one subcommand: declared up front, so an unknown flag, a missing value or
// a malformed number is a clear one-line error.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace fi {

struct OptionSpec {
  std::vector<std::string> names;  // e.g. {"-n", "--n-predict"}
  bool takes_value = true;
  std::string help;
};

class Args {
 public:
  Args(std::string command, std::vector<OptionSpec> specs, int argc, char** argv, int first);

  bool help_requested() const { return help_; }
  std::string usage() const;
  const std::vector<std::string>& positional() const { return positional_; }

  bool has(const std::string& name) const;
  std::string text(const std::string& name, const std::string& fallback) const;
  std::string required_text(const std::string& name) const;
  int64_t integer(const std::string& name, int64_t fallback, int64_t low, int64_t high) const;
  double real(const std::string& name, double fallback, double low, double high) const;

 private:
  const OptionSpec& spec(const std::string& name) const;
  std::optional<std::string> value(const std::string& name) const;

  std::string command_;
  std::vector<OptionSpec> specs_;
  std::map<std::string, std::string> values_;  // keyed by the first name of the spec
  std::vector<std::string> positional_;
  bool help_ = false;
};

}  // namespace fi
