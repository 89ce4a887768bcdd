#include "host/text/jinja_text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "host/text/unicode.h"

namespace fi::jinja {

namespace {

constexpr uint32_t kEscapedByteBase = 0xDC00;  // + the byte, for bytes that are not UTF-8

// Decodes one code point at text[i], advancing i; invalid bytes decode to kEscapedByteBase + byte.
uint32_t next_codepoint(std::string_view text, size_t& i) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
  const uint8_t lead = byte(i);
  if (lead < 0x80) {
    ++i;
    return lead;
  }
  int length = 0;
  uint32_t codepoint = 0, minimum = 0;
  if ((lead & 0xE0) == 0xC0) {
    length = 2, codepoint = lead & 0x1F, minimum = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, codepoint = lead & 0x0F, minimum = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, codepoint = lead & 0x07, minimum = 0x10000;
  }
  bool valid = length > 0 && i + static_cast<size_t>(length) <= text.size();
  for (int k = 1; valid && k < length; ++k) {
    const uint8_t continuation = byte(i + static_cast<size_t>(k));
    valid = (continuation & 0xC0) == 0x80;
    codepoint = (codepoint << 6) | (continuation & 0x3F);
  }
  if (!valid || codepoint < minimum || codepoint > 0x10FFFF || (codepoint >= 0xD800 && codepoint <= 0xDFFF)) {
    ++i;
    return kEscapedByteBase + lead;
  }
  i += static_cast<size_t>(length);
  return codepoint;
}

bool in_set(const std::vector<uint32_t>& set, uint32_t codepoint) {
  return std::find(set.begin(), set.end(), codepoint) != set.end();
}

// What str.isprintable() rejects, closely enough for repr(): controls, separators other than the
// space, format characters, surrogates and private use.
bool is_printable(uint32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
  if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) || (c >= 0x205F && c <= 0x206F))
    return false;
  if (c == 0x3000 || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB)) return false;
  if ((c >= 0xD800 && c <= 0xF8FF) || c >= 0xF0000) return false;
  return true;
}

}  // namespace

std::vector<uint32_t> decode_utf8(std::string_view text) {
  std::vector<uint32_t> codepoints;
  codepoints.reserve(text.size());
  for (size_t i = 0; i < text.size();) codepoints.push_back(next_codepoint(text, i));
  return codepoints;
}

void append_codepoint(std::string& out, uint32_t c) {
  if (c >= kEscapedByteBase + 0x80 && c <= kEscapedByteBase + 0xFF) {
    out += static_cast<char>(c - kEscapedByteBase);
  } else if (c < 0x80) {
    out += static_cast<char>(c);
  } else {
    utf8_append(out, c);
  }
}

std::string encode_utf8(const std::vector<uint32_t>& codepoints) {
  std::string out;
  out.reserve(codepoints.size());
  for (uint32_t c : codepoints) append_codepoint(out, c);
  return out;
}

bool is_ascii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return static_cast<uint8_t>(c) < 0x80; });
}

size_t codepoint_count(std::string_view text) {
  if (is_ascii(text)) return text.size();
  size_t count = 0;
  for (size_t i = 0; i < text.size(); ++count) next_codepoint(text, i);
  return count;
}

bool py_isspace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool py_isalpha(uint32_t c) {
  if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
  return c < kEscapedByteBase + 0x80 || c > kEscapedByteBase + 0xFF ? is_letter(c) : false;
}

bool py_isdigit(uint32_t c) { return c < 0x80 ? c >= '0' && c <= '9' : is_number(c); }

// Single code point case mappings for the scripts chat text mostly uses (Latin, Greek, Cyrillic,
// full-width Latin); Python's multi-character mappings (e.g. ß -> SS) are not made.
uint32_t py_upper(uint32_t c) {
  if (c >= 'a' && c <= 'z') return c - 0x20;
  if (c < 0x80) return c;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 0x20;
  if (c == 0xFF) return 0x178;
  if (c == 0xB5) return 0x39C;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x131) return 'I';
    if (c == 0x17F) return 'S';
    const bool odd_pairs = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (c == 0x130 || c == 0x138 || c == 0x149 || c == 0x178) return c;
    if (odd_pairs) return (c % 2 == 0) ? c - 1 : c;
    return (c % 2 == 1) ? c - 1 : c;
  }
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 0x20;
  if (c == 0x3C2) return 0x3A3;
  if (c >= 0x430 && c <= 0x44F) return c - 0x20;
  if (c >= 0x450 && c <= 0x45F) return c - 0x50;
  if (c >= 0xFF41 && c <= 0xFF5A) return c - 0x20;
  return c;
}

uint32_t py_lower(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 0x20;
  if (c < 0x80) return c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 0x20;
  if (c == 0x178) return 0xFF;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x130) return 'i';
    const bool odd_pairs = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (c == 0x131 || c == 0x138 || c == 0x149 || c == 0x17F) return c;
    if (odd_pairs) return (c % 2 == 1) ? c + 1 : c;
    return (c % 2 == 0) ? c + 1 : c;
  }
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 0x20;
  if (c >= 0x410 && c <= 0x42F) return c + 0x20;
  if (c >= 0x400 && c <= 0x40F) return c + 0x50;
  if (c >= 0xFF21 && c <= 0xFF3A) return c + 0x20;
  return c;
}

static bool is_cased(uint32_t c) { return py_upper(c) != c || py_lower(c) != c; }

std::string to_upper(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) append_codepoint(out, py_upper(next_codepoint(text, i)));
  return out;
}

std::string to_lower(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) append_codepoint(out, py_lower(next_codepoint(text, i)));
  return out;
}

std::string capitalize(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const bool first = i == 0;
    const uint32_t c = next_codepoint(text, i);
    append_codepoint(out, first ? py_upper(c) : py_lower(c));
  }
  return out;
}

std::string python_title(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool previous_cased = false;
  for (size_t i = 0; i < text.size();) {
    const uint32_t c = next_codepoint(text, i);
    append_codepoint(out, previous_cased ? py_lower(c) : py_upper(c));
    previous_cased = is_cased(c);
  }
  return out;
}

std::string strip(std::string_view text, const std::optional<std::string>& chars, bool left, bool right) {
  const std::vector<uint32_t> codepoints = decode_utf8(text);
  const std::vector<uint32_t> set = chars ? decode_utf8(*chars) : std::vector<uint32_t>{};
  const auto strippable = [&](uint32_t c) { return chars ? in_set(set, c) : py_isspace(c); };
  size_t begin = 0, end = codepoints.size();
  if (left)
    while (begin < end && strippable(codepoints[begin])) ++begin;
  if (right)
    while (end > begin && strippable(codepoints[end - 1])) --end;
  return encode_utf8(std::vector<uint32_t>(codepoints.begin() + static_cast<std::ptrdiff_t>(begin),
                                           codepoints.begin() + static_cast<std::ptrdiff_t>(end)));
}

std::vector<std::string> split(std::string_view text, const std::optional<std::string>& separator, int64_t max_splits) {
  std::vector<std::string> parts;
  if (separator) {
    size_t start = 0;
    while (max_splits < 0 || static_cast<int64_t>(parts.size()) < max_splits) {
      const size_t found = text.find(*separator, start);
      if (found == std::string_view::npos) break;
      parts.emplace_back(text.substr(start, found - start));
      start = found + separator->size();
    }
    parts.emplace_back(text.substr(start));
    return parts;
  }
  const std::vector<uint32_t> codepoints = decode_utf8(text);
  size_t i = 0;
  const size_t n = codepoints.size();
  while (true) {
    while (i < n && py_isspace(codepoints[i])) ++i;
    if (i == n) break;
    if (max_splits >= 0 && static_cast<int64_t>(parts.size()) == max_splits) {
      size_t end = n;
      while (end > i && py_isspace(codepoints[end - 1])) --end;
      parts.push_back(encode_utf8({codepoints.begin() + static_cast<std::ptrdiff_t>(i), codepoints.begin() + static_cast<std::ptrdiff_t>(end)}));
      break;
    }
    const size_t start = i;
    while (i < n && !py_isspace(codepoints[i])) ++i;
    parts.push_back(encode_utf8({codepoints.begin() + static_cast<std::ptrdiff_t>(start), codepoints.begin() + static_cast<std::ptrdiff_t>(i)}));
  }
  return parts;
}

std::vector<std::string> rsplit(std::string_view text, const std::optional<std::string>& separator, int64_t max_splits) {
  if (max_splits < 0) return split(text, separator, max_splits);
  std::vector<std::string> parts;
  if (separator) {
    size_t end = text.size();
    while (static_cast<int64_t>(parts.size()) < max_splits) {
      if (end < separator->size()) break;
      const size_t found = text.rfind(*separator, end - separator->size());
      if (found == std::string_view::npos) break;
      parts.emplace_back(text.substr(found + separator->size(), end - found - separator->size()));
      end = found;
    }
    parts.emplace_back(text.substr(0, end));
  } else {
    const std::vector<uint32_t> codepoints = decode_utf8(text);
    size_t i = codepoints.size();
    while (true) {
      while (i > 0 && py_isspace(codepoints[i - 1])) --i;
      if (i == 0) break;
      if (static_cast<int64_t>(parts.size()) == max_splits) {
        size_t begin = 0;
        while (begin < i && py_isspace(codepoints[begin])) ++begin;
        parts.push_back(encode_utf8({codepoints.begin() + static_cast<std::ptrdiff_t>(begin), codepoints.begin() + static_cast<std::ptrdiff_t>(i)}));
        break;
      }
      const size_t end = i;
      while (i > 0 && !py_isspace(codepoints[i - 1])) --i;
      parts.push_back(encode_utf8({codepoints.begin() + static_cast<std::ptrdiff_t>(i), codepoints.begin() + static_cast<std::ptrdiff_t>(end)}));
    }
  }
  std::reverse(parts.begin(), parts.end());
  return parts;
}

std::vector<std::string> splitlines(std::string_view text, bool keep_ends) {
  const std::vector<uint32_t> codepoints = decode_utf8(text);
  std::vector<std::string> lines;
  const auto is_break = [](uint32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) || c == 0x85 || c == 0x2028 || c == 0x2029;
  };
  size_t start = 0;
  for (size_t i = 0; i < codepoints.size();) {
    if (!is_break(codepoints[i])) {
      ++i;
      continue;
    }
    size_t end_of_break = i + 1;
    if (codepoints[i] == '\r' && end_of_break < codepoints.size() && codepoints[end_of_break] == '\n') ++end_of_break;
    const size_t end = keep_ends ? end_of_break : i;
    lines.push_back(encode_utf8({codepoints.begin() + static_cast<std::ptrdiff_t>(start), codepoints.begin() + static_cast<std::ptrdiff_t>(end)}));
    start = i = end_of_break;
  }
  if (start < codepoints.size())
    lines.push_back(encode_utf8({codepoints.begin() + static_cast<std::ptrdiff_t>(start), codepoints.end()}));
  return lines;
}

std::string replace(std::string_view text, std::string_view old_text, std::string_view new_text, int64_t count) {
  std::string out;
  int64_t done = 0;
  if (old_text.empty()) {
    // Python inserts the replacement before every code point and at the end.
    size_t i = 0;
    while (i < text.size()) {
      if (count < 0 || done < count) {
        out += new_text;
        ++done;
      }
      const size_t start = i;
      next_codepoint(text, i);
      out += text.substr(start, i - start);
    }
    if (count < 0 || done < count) out += new_text;
    return out;
  }
  size_t start = 0;
  while (count < 0 || done < count) {
    const size_t found = text.find(old_text, start);
    if (found == std::string_view::npos) break;
    out += text.substr(start, found - start);
    out += new_text;
    start = found + old_text.size();
    ++done;
  }
  out += text.substr(start);
  return out;
}

size_t count_occurrences(std::string_view text, std::string_view needle) {
  if (needle.empty()) return codepoint_count(text) + 1;
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + needle.size())) ++count;
  return count;
}

std::string float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  const std::string scientific(buffer, result.ptr);
  // "-d.ddde[+-]xx": collect the digits and the exponent.
  std::string digits;
  size_t i = 0;
  const bool negative = scientific[0] == '-';
  if (negative) i = 1;
  for (; i < scientific.size() && scientific[i] != 'e'; ++i)
    if (scientific[i] != '.') digits += scientific[i];
  const int exponent = std::stoi(scientific.substr(i + 1));
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  const int point = exponent + 1;  // value = 0.digits * 10^point
  std::string out = negative ? "-" : "";
  const int n = static_cast<int>(digits.size());
  if (point > -4 && point <= 16) {
    if (point <= 0) {
      out += "0.";
      out.append(static_cast<size_t>(-point), '0');
      out += digits;
    } else if (point < n) {
      out += digits.substr(0, static_cast<size_t>(point));
      out += '.';
      out += digits.substr(static_cast<size_t>(point));
    } else {
      out += digits + std::string(static_cast<size_t>(point - n), '0') + ".0";
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (n > 1) {
    out += '.';
    out += digits.substr(1);
  }
  char exponent_text[16];
  std::snprintf(exponent_text, sizeof exponent_text, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out + exponent_text;
}

std::string string_repr(std::string_view text) {
  const bool has_single = text.find('\'') != std::string_view::npos;
  const bool has_double = text.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0; i < text.size();) {
    const uint32_t c = next_codepoint(text, i);
    char escape[16];
    if (c == static_cast<uint32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (!is_printable(c)) {
      if (c < 0x100)
        std::snprintf(escape, sizeof escape, "\\x%02x", c);
      else if (c < 0x10000)
        std::snprintf(escape, sizeof escape, "\\u%04x", c);
      else
        std::snprintf(escape, sizeof escape, "\\U%08x", c);
      out += escape;
    } else {
      append_codepoint(out, c);
    }
  }
  out += quote;
  return out;
}

void append_json_string(std::string& out, std::string_view text, bool ensure_ascii) {
  out += '"';
  for (size_t i = 0; i < text.size();) {
    const uint32_t c = next_codepoint(text, i);
    char escape[16];
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || (ensure_ascii && c >= 0x7F && c < 0x10000)) {
          std::snprintf(escape, sizeof escape, "\\u%04x", c);
          out += escape;
        } else if (ensure_ascii && c >= 0x10000) {
          const uint32_t offset = c - 0x10000;
          std::snprintf(escape, sizeof escape, "\\u%04x\\u%04x", 0xD800 + (offset >> 10), 0xDC00 + (offset & 0x3FF));
          out += escape;
        } else {
          append_codepoint(out, c);
        }
    }
  }
  out += '"';
}

}  // namespace fi::jinja
