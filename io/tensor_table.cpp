#include "io/tensor_table.h"

#include "io/error.h"

namespace fi {

std::string TensorInfo::shape_string() const {
  std::string text = "[";
  for (int d = 0; d < n_dims; ++d) {
    if (d) text += ", ";
    text += std::to_string(shape[d]);
  }
  return text + "]";
}

TensorTable::TensorTable(std::vector<TensorInfo> tensors) : tensors_(std::move(tensors)) {
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (!by_name_.emplace(tensors_[i].name, i).second)
      fail("duplicate tensor name '%s'", tensors_[i].name.c_str());
  }
}

const TensorInfo* TensorTable::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& TensorTable::require(const std::string& name, std::initializer_list<uint64_t> shape,
                                       std::initializer_list<TensorType> allowed_types) const {
  return require(name, shape, std::vector<TensorType>(allowed_types));
}

const TensorInfo& TensorTable::require(const std::string& name,
                                       std::initializer_list<uint64_t> shape,
                                       const std::vector<TensorType>& allowed_types) const {
  TensorInfo expected;
  expected.n_dims = static_cast<int>(shape.size());
  int d = 0;
  for (uint64_t extent : shape) expected.shape[d++] = extent;

  const TensorInfo* actual = find(name);
  if (!actual) fail("tensor '%s' %s is missing", name.c_str(), expected.shape_string().c_str());
  if (actual->shape != expected.shape)
    fail("tensor '%s': expected shape %s, got %s", name.c_str(), expected.shape_string().c_str(),
         actual->shape_string().c_str());
  for (TensorType type : allowed_types)
    if (actual->type == type) return *actual;
  std::string allowed;
  for (TensorType type : allowed_types) allowed += std::string(allowed.empty() ? "" : "/") + type_name(type);
  fail("tensor '%s': expected type %s, got %s", name.c_str(), allowed.c_str(), type_name(actual->type));
}

uint64_t TensorTable::total_bytes() const {
  uint64_t total = 0;
  for (const TensorInfo& tensor : tensors_) total += tensor.bytes;
  return total;
}

}  // namespace fi
