#pragma once
// Memory budgets as users write them: 512M, 6G, 6.5GiB, 1.5GB, 4096.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fi {

// K, M, G, T and KiB, MiB, GiB, TiB are powers of 1024; KB, MB, GB, TB powers of 1000; no unit
// means bytes. nullopt for anything else (negative, empty, trailing junk, overflow).
std::optional<uint64_t> parse_byte_size(std::string_view text);

// "1.50 GiB"
std::string format_bytes(uint64_t bytes);

}  // namespace fi
