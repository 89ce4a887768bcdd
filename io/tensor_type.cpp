#include "io/tensor_type.h"

#include <string_view>

#include "io/error.h"

namespace fi {

namespace {

constexpr bool ids_ascending() {
  for (size_t i = 1; i < kTensorTypeCount; ++i)
    if (static_cast<uint32_t>(kTensorTypes[i - 1]) >= static_cast<uint32_t>(kTensorTypes[i])) return false;
  return true;
}
static_assert(ids_ascending(), "FI_TENSOR_TYPES lists the types in id order");

// Names of the other ggml ids, so an unsupported file is named precisely.
constexpr const char* kAllNames[] = {
    "F32",  "F16",     "Q4_0",    "Q4_1",   "Q4_2", "Q4_3", "Q5_0",  "Q5_1",   "Q8_0",    "Q8_1",
    "Q2_K", "Q3_K",    "Q4_K",    "Q5_K",   "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
    "IQ4_NL", "IQ3_S", "IQ2_S",   "IQ4_XS", "I8",   "I16",  "I32",   "I64",    "F64",     "IQ1_M",
    "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0",
};

constexpr bool names_agree() {
  for (const TypeTraits& traits : kTypeTraits)
    if (std::string_view(kAllNames[static_cast<uint32_t>(traits.type)]) != traits.name) return false;
  return true;
}
static_assert(names_agree(), "a supported type's id names another ggml type");

}  // namespace

const std::vector<TensorType>& supported_types() {
  static const std::vector<TensorType> types(std::begin(kTensorTypes), std::end(kTensorTypes));
  return types;
}

std::optional<TypeTraits> find_type_traits(uint32_t raw_type) {
  for (const TypeTraits& traits : kTypeTraits)
    if (static_cast<uint32_t>(traits.type) == raw_type) return traits;
  return std::nullopt;
}

const TypeTraits& type_traits(TensorType type) {
  for (const TypeTraits& traits : kTypeTraits)
    if (traits.type == type) return traits;
  fail("internal: tensor type %u has no traits", static_cast<unsigned>(type));
}

std::string type_name(uint32_t raw_type) {
  if (raw_type < std::size(kAllNames)) return kAllNames[raw_type];
  return "type#" + std::to_string(raw_type);
}

uint64_t row_bytes(TensorType type, uint64_t row_elements) {
  const TypeTraits& traits = type_traits(type);
  return row_elements / traits.block_elements * traits.block_bytes;
}

}  // namespace fi
