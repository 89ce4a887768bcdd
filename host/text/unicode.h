#pragma once
// UTF-8 decoding and encoding for the tokenizers and streamed output.
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

}  // namespace fi
