#pragma once
// ggml tensor types as stored in GGUF files: id, name and block geometry.
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

namespace fi {

// Every type the kernels compute with, in id order: X(name, ggml id, elements per block, bytes per
// block). The enum, the traits and every switch over types (CPU dispatch, CUDA launchers, the
// GPU's block decoders, the tests' type lists) are generated from this one list, so a type added
// here without a kernel somewhere fails to compile.
#define FI_TENSOR_TYPES(X) \
  X(F32, 0, 1, 4)          \
  X(F16, 1, 1, 2)          \
  X(Q4_0, 2, 32, 18)       \
  X(Q4_1, 3, 32, 20)       \
  X(Q5_0, 6, 32, 22)       \
  X(Q5_1, 7, 32, 24)       \
  X(Q8_0, 8, 32, 34)       \
  X(Q2_K, 10, 256, 84)     \
  X(Q3_K, 11, 256, 110)    \
  X(Q4_K, 12, 256, 144)    \
  X(Q5_K, 13, 256, 176)    \
  X(Q6_K, 14, 256, 210)    \
  X(IQ4_NL, 20, 32, 18)    \
  X(IQ4_XS, 23, 256, 136)  \
  X(BF16, 30, 1, 2)

enum class TensorType : uint32_t {
#define FI_TYPE_ENUMERATOR(name, id, elements, bytes) name = id,
  FI_TENSOR_TYPES(FI_TYPE_ENUMERATOR)
#undef FI_TYPE_ENUMERATOR
};

struct TypeTraits {
  TensorType type;
  const char* name;
  uint32_t block_elements;  // elements per block (1 for float types)
  uint32_t block_bytes;     // bytes per block
};

inline constexpr TypeTraits kTypeTraits[] = {
#define FI_TYPE_TRAITS(name, id, elements, bytes) {TensorType::name, #name, elements, bytes},
    FI_TENSOR_TYPES(FI_TYPE_TRAITS)
#undef FI_TYPE_TRAITS
};
inline constexpr TensorType kTensorTypes[] = {
#define FI_TYPE_VALUE(name, id, elements, bytes) TensorType::name,
    FI_TENSOR_TYPES(FI_TYPE_VALUE)
#undef FI_TYPE_VALUE
};
inline constexpr size_t kTensorTypeCount = std::size(kTensorTypes);

// Traits of a listed type at compile time (nullopt for a value the list does not have). By value and
// by index: GCC does not treat address comparisons as constant under AddressSanitizer.
constexpr std::optional<TypeTraits> find_traits(TensorType type) {
  for (size_t i = 0; i < std::size(kTypeTraits); ++i)
    if (kTypeTraits[i].type == type) return kTypeTraits[i];
  return std::nullopt;
}

constexpr bool is_float_type(TensorType type) {
  return type == TensorType::F32 || type == TensorType::F16 || type == TensorType::BF16;
}

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
