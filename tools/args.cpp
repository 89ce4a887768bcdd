#include "tools/args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "io/error.h"

namespace fi {

Args::Args(std::string command, std::vector<OptionSpec> specs, int argc, char** argv, int first)
    : command_(std::move(command)), specs_(std::move(specs)) {
  for (int i = first; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      help_ = true;
      continue;
    }
    if (arg.size() > 1 && arg[0] == '-' && !(arg.size() > 1 && (std::isdigit(static_cast<unsigned char>(arg[1])) || arg[1] == '.'))) {
      std::string name = arg, inline_value;
      bool has_inline = false;
      if (const size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
        name = arg.substr(0, eq);
        inline_value = arg.substr(eq + 1);
        has_inline = true;
      }
      const OptionSpec* found = nullptr;
      for (const OptionSpec& s : specs_)
        for (const std::string& n : s.names)
          if (n == name) found = &s;
      if (!found) fail("%s: unknown option '%s' (see 'flexinfer %s --help')", command_.c_str(), name.c_str(), command_.c_str());
      if (!found->takes_value) {
        if (has_inline) fail("%s: option '%s' takes no value", command_.c_str(), name.c_str());
        values_[found->names[0]] = "";
        continue;
      }
      if (has_inline) {
        values_[found->names[0]] = inline_value;
      } else {
        if (i + 1 >= argc) fail("%s: option '%s' needs a value", command_.c_str(), name.c_str());
        values_[found->names[0]] = argv[++i];
      }
      continue;
    }
    positional_.push_back(arg);
  }
}

std::string Args::usage() const {
  std::string text = "usage: flexinfer " + command_ + " [options]\n";
  for (const OptionSpec& s : specs_) {
    std::string names;
    for (const std::string& n : s.names) names += (names.empty() ? "" : ", ") + n;
    if (s.takes_value) names += " X";
    text += "  " + names + std::string(names.size() < 28 ? 28 - names.size() : 1, ' ') + s.help + "\n";
  }
  return text;
}

const OptionSpec& Args::spec(const std::string& name) const {
  for (const OptionSpec& s : specs_)
    for (const std::string& n : s.names)
      if (n == name) return s;
  fail("internal: option '%s' is not declared for '%s'", name.c_str(), command_.c_str());
}

std::optional<std::string> Args::value(const std::string& name) const {
  auto it = values_.find(spec(name).names[0]);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

bool Args::has(const std::string& name) const { return value(name).has_value(); }

std::string Args::text(const std::string& name, const std::string& fallback) const {
  return value(name).value_or(fallback);
}

std::string Args::required_text(const std::string& name) const {
  const auto v = value(name);
  if (!v) fail("%s: option '%s' is required (see 'flexinfer %s --help')", command_.c_str(), name.c_str(), command_.c_str());
  return *v;
}

int64_t Args::integer(const std::string& name, int64_t fallback, int64_t low, int64_t high) const {
  const auto v = value(name);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  const long long parsed = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0' || errno == ERANGE)
    fail("%s: option '%s' needs an integer, got '%s'", command_.c_str(), name.c_str(), v->c_str());
  if (parsed < low || parsed > high)
    fail("%s: option '%s' = %lld is outside %lld..%lld", command_.c_str(), name.c_str(), parsed,
         static_cast<long long>(low), static_cast<long long>(high));
  return parsed;
}

double Args::real(const std::string& name, double fallback, double low, double high) const {
  const auto v = value(name);
  if (!v) return fallback;
  char* end = nullptr;
  const double parsed = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0' || !std::isfinite(parsed))
    fail("%s: option '%s' needs a number, got '%s'", command_.c_str(), name.c_str(), v->c_str());
  if (parsed < low || parsed > high)
    fail("%s: option '%s' = %g is outside %g..%g", command_.c_str(), name.c_str(), parsed, low, high);
  return parsed;
}

}  // namespace fi
