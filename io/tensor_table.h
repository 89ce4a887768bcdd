#pragma once
// The format-independent tensor table shared by the planner and the engine.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/tensor_type.h"

namespace fi {

constexpr int kMaxDims = 4;

struct TensorInfo {
  std::string name;
  TensorType type = TensorType::F32;
  int n_dims = 0;
  // ggml order: shape[0] is the row length (contiguous), shape[1] the row count; unused dims are 1.
  std::array<uint64_t, kMaxDims> shape{1, 1, 1, 1};
  uint64_t file_offset = 0;  // absolute offset of the first byte in the file
  uint64_t bytes = 0;

  uint64_t elements() const { return shape[0] * shape[1] * shape[2] * shape[3]; }
  uint64_t rows() const { return shape[1] * shape[2] * shape[3]; }
  std::string shape_string() const;
};

class TensorTable {
 public:
  TensorTable() = default;
  explicit TensorTable(std::vector<TensorInfo> tensors);

  const std::vector<TensorInfo>& all() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  // The tensor with exactly this shape and one of the allowed types; otherwise an Error that says
  // expected vs actual.
  const TensorInfo& require(const std::string& name, std::initializer_list<uint64_t> shape,
                            std::initializer_list<TensorType> allowed_types) const;
  const TensorInfo& require(const std::string& name, std::initializer_list<uint64_t> shape,
                            const std::vector<TensorType>& allowed_types) const;
  uint64_t total_bytes() const;

 private:
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
};

}  // namespace fi
