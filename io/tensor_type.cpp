#include "io/tensor_type.h"

#include <algorithm>

#include "io/error.h"

namespace fi {

namespace {
constexpr TypeTraits kSupported[] = {
    {TensorType::F32, "F32", 1, 4},       {TensorType::F16, "F16", 1, 2},
    {TensorType::BF16, "BF16", 1, 2},     {TensorType::Q8_0, "Q8_0", 32, 34},
    {TensorType::Q4_0, "Q4_0", 32, 18},   {TensorType::Q4_K, "Q4_K", 256, 144},
    {TensorType::Q5_K, "Q5_K", 256, 176}, {TensorType::Q6_K, "Q6_K", 256, 210},
};

// Names of the other ggml ids, so an unsupported file is named precisely.
constexpr const char* kAllNames[] = {
    "F32",  "F16",     "Q4_0",    "Q4_1",   "Q4_2", "Q4_3", "Q5_0",  "Q5_1",   "Q8_0",    "Q8_1",
    "Q2_K", "Q3_K",    "Q4_K",    "Q5_K",   "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
    "IQ4_NL", "IQ3_S", "IQ2_S",   "IQ4_XS", "I8",   "I16",  "I32",   "I64",    "F64",     "IQ1_M",
    "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0",
};
}  // namespace

const std::vector<TensorType>& supported_types() {
  static const std::vector<TensorType> types = [] {
    std::vector<TensorType> list;
    for (const TypeTraits& traits : kSupported) list.push_back(traits.type);
    std::sort(list.begin(), list.end());
    return list;
  }();
  return types;
}

std::optional<TypeTraits> find_type_traits(uint32_t raw_type) {
  for (const TypeTraits& traits : kSupported)
    if (static_cast<uint32_t>(traits.type) == raw_type) return traits;
  return std::nullopt;
}

const TypeTraits& type_traits(TensorType type) {
  for (const TypeTraits& traits : kSupported)
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
