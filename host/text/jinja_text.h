#pragma once
// Python's string semantics over UTF-8 text, as chat templates expect them from Jinja2: strings
// are sequences of code points, whitespace is str.isspace, floats print as repr() does.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fi::jinja {

// Code points of `text`. Bytes that are not valid UTF-8 become U+DC80..U+DCFF (Python's
// surrogateescape) so that encoding gives back the same bytes.
std::vector<uint32_t> decode_utf8(std::string_view text);
std::string encode_utf8(const std::vector<uint32_t>& codepoints);
void append_codepoint(std::string& out, uint32_t codepoint);
bool is_ascii(std::string_view text);
size_t codepoint_count(std::string_view text);

bool py_isspace(uint32_t codepoint);
bool py_isalpha(uint32_t codepoint);
bool py_isdigit(uint32_t codepoint);
uint32_t py_upper(uint32_t codepoint);
uint32_t py_lower(uint32_t codepoint);

std::string to_upper(std::string_view text);
std::string to_lower(std::string_view text);
std::string capitalize(std::string_view text);  // str.capitalize
std::string python_title(std::string_view text);  // str.title

// str.strip / lstrip / rstrip; no `chars` strips whitespace.
std::string strip(std::string_view text, const std::optional<std::string>& chars, bool left, bool right);
// str.split(sep, maxsplit): no separator splits on runs of whitespace and drops empty parts.
std::vector<std::string> split(std::string_view text, const std::optional<std::string>& separator, int64_t max_splits);
std::vector<std::string> rsplit(std::string_view text, const std::optional<std::string>& separator, int64_t max_splits);
std::vector<std::string> splitlines(std::string_view text, bool keep_ends);
std::string replace(std::string_view text, std::string_view old_text, std::string_view new_text, int64_t count);
// Occurrences of `needle` that do not overlap, as str.count.
size_t count_occurrences(std::string_view text, std::string_view needle);

// repr() of a float: shortest round-trip digits, fixed notation for exponents in [-4, 16).
std::string float_repr(double value);
// repr() of a str: quotes chosen as Python chooses them, non-printable characters escaped.
std::string string_repr(std::string_view text);
// A JSON string literal as json.dumps writes it; ensure_ascii escapes non-ASCII as \uXXXX.
void append_json_string(std::string& out, std::string_view text, bool ensure_ascii);

}  // namespace fi::jinja
