#pragma once
// ggml tensor types as stored in GGUF files: id, name and block geometry.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fi {

enum class TensorType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  BF16 = 30,
};

struct TypeTraits {
  TensorType type;
  const char* name;
  uint32_t block_elements;  // elements per block (1 for float types)
  uint32_t block_bytes;     // bytes per block
};

// Every type the kernels compute with, in id order.
const std::vector<TensorType>& supported_types();
// Traits of a supported type, or nullopt for an id we cannot compute with.
std::optional<TypeTraits> find_type_traits(uint32_t raw_type);
const TypeTraits& type_traits(TensorType type);
// Name for any ggml type id (also unsupported ones), for error messages.
std::string type_name(uint32_t raw_type);
inline const char* type_name(TensorType type) { return type_traits(type).name; }

// Bytes of one row of `row_elements` (must be a multiple of the block size).
uint64_t row_bytes(TensorType type, uint64_t row_elements);

}  // namespace fi
