#include "planner/budget.h"

#include <cctype>
#include <charconv>
#include <cinttypes>
#include <cmath>
#include <cstdio>

namespace fi {

std::optional<uint64_t> parse_byte_size(std::string_view text) {
  size_t number_end = 0;
  while (number_end < text.size() && (std::isdigit(static_cast<unsigned char>(text[number_end])) || text[number_end] == '.'))
    ++number_end;
  if (number_end == 0) return std::nullopt;
  double value = 0.0;
  const auto parsed = std::from_chars(text.data(), text.data() + number_end, value);
  if (parsed.ec != std::errc() || parsed.ptr != text.data() + number_end) return std::nullopt;

  std::string unit;
  for (char c : text.substr(number_end)) unit += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double scale = 0.0;
  const char* prefixes = "KMGT";
  if (unit.empty() || unit == "B") scale = 1.0;
  for (int i = 0; i < 4 && scale == 0.0; ++i) {
    const std::string p(1, prefixes[i]);
    if (unit == p || unit == p + "IB") scale = std::pow(1024.0, i + 1);
    else if (unit == p + "B") scale = std::pow(1000.0, i + 1);
  }
  if (scale == 0.0) return std::nullopt;
  const double bytes = std::round(value * scale);
  if (!(bytes >= 0.0) || bytes >= 1.8e19) return std::nullopt;
  return static_cast<uint64_t>(bytes);
}

std::string format_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  char text[48];
  if (unit == 0) std::snprintf(text, sizeof text, "%" PRIu64 " B", bytes);
  else std::snprintf(text, sizeof text, "%.2f %s", value, units[unit]);
  return text;
}

}  // namespace fi
