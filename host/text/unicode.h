#pragma once
// UTF-8 decoding and encoding for the tokenizers, templates and streamed output; Unicode
// categories for the templates' string methods.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fi {

// Length of the UTF-8 sequence starting with this byte (1 for invalid lead bytes).
int utf8_sequence_length(uint8_t lead);
// Decodes into code points; each byte of an invalid or truncated sequence becomes U+FFFD.
std::vector<uint32_t> utf8_decode(std::string_view text);
void utf8_append(std::string& out, uint32_t codepoint);

// Longest prefix of `bytes` that is complete, valid UTF-8, with invalid bytes replaced by U+FFFD;
// an incomplete sequence at the end is left in `bytes` for the next call. For streaming output.
std::string take_valid_utf8(std::string& bytes);

// Unicode general categories L* (letters) and N* (numbers), as PCRE2's tables say.
bool is_letter(uint32_t codepoint);
bool is_number(uint32_t codepoint);

}  // namespace fi
