#include "host/text/unicode.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>

namespace fi {

namespace {

// Whether one code point matches `pattern` (a single property class); compiled once.
class CategoryTest {
 public:
  explicit CategoryTest(const char* pattern) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &error,
                          &offset, nullptr);
  }
  ~CategoryTest() { pcre2_code_free(code_); }
  CategoryTest(const CategoryTest&) = delete;
  CategoryTest& operator=(const CategoryTest&) = delete;

  bool operator()(uint32_t codepoint) const {
    if (!code_ || codepoint > 0x10FFFF || (codepoint >= 0xD800 && codepoint <= 0xDFFF)) return false;
    std::string text;
    utf8_append(text, codepoint);
    const std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
        pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
    return match && pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0, match.get(), nullptr) >= 0;
  }

 private:
  pcre2_code* code_ = nullptr;
};

// Decodes one sequence at text[i]; returns its length, or 0 when it is invalid or truncated.
int decode_one(std::string_view text, size_t i, uint32_t* codepoint) {
  const auto lead = static_cast<uint8_t>(text[i]);
  const int length = utf8_sequence_length(lead);
  if (length == 1) {
    *codepoint = lead;
    return lead < 0x80 ? 1 : 0;
  }
  if (i + static_cast<size_t>(length) > text.size()) return 0;
  uint32_t value = lead & (0xFF >> (length + 1));
  for (int k = 1; k < length; ++k) {
    const auto byte = static_cast<uint8_t>(text[i + k]);
    if ((byte & 0xC0) != 0x80) return 0;
    value = (value << 6) | (byte & 0x3F);
  }
  static constexpr uint32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
  if (value < kMinimum[length] || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
  *codepoint = value;
  return length;
}
}  // namespace

int utf8_sequence_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

std::vector<uint32_t> utf8_decode(std::string_view text) {
  std::vector<uint32_t> codepoints;
  codepoints.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t codepoint = 0;
    const int length = decode_one(text, i, &codepoint);
    if (length == 0) {
      codepoints.push_back(0xFFFD);
      ++i;
    } else {
      codepoints.push_back(codepoint);
      i += static_cast<size_t>(length);
    }
  }
  return codepoints;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string take_valid_utf8(std::string& bytes) {
  std::string out;
  size_t i = 0;
  while (i < bytes.size()) {
    uint32_t codepoint = 0;
    const int length = decode_one(bytes, i, &codepoint);
    if (length > 0) {
      out.append(bytes, i, static_cast<size_t>(length));
      i += static_cast<size_t>(length);
      continue;
    }
    // A valid-looking but unfinished sequence at the end waits for more bytes.
    const int wanted = utf8_sequence_length(static_cast<uint8_t>(bytes[i]));
    if (wanted > 1 && i + static_cast<size_t>(wanted) > bytes.size()) {
      bool prefix_ok = true;
      for (size_t k = i + 1; k < bytes.size(); ++k) prefix_ok &= (static_cast<uint8_t>(bytes[k]) & 0xC0) == 0x80;
      if (prefix_ok) break;
    }
    utf8_append(out, 0xFFFD);
    ++i;
  }
  bytes.erase(0, i);
  return out;
}

bool is_letter(uint32_t codepoint) {
  static const CategoryTest letter("^\\p{L}$");
  return letter(codepoint);
}

bool is_number(uint32_t codepoint) {
  static const CategoryTest number("^\\p{N}$");
  return number(codepoint);
}

}  // namespace fi
