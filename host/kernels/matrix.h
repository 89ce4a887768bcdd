#pragma once
// A weight matrix as the CPU kernels read it.
#include <cstdint>

#include "io/tensor_type.h"

namespace fi {

// `rows` rows of `cols` elements of `type`, row-major; or, when `interleaved`, groups of 8 rows
// interleaved block by block (host/kernels/repack.h), which only matmul reads. A matrix split
// between resident and streamed memory keeps rows [0, split_row) at `data` and the rest at `tail`.
// `as_interleaved`: plain rows that must give the bits they would give interleaved (an expert in
// the expert cache, computed as read or interleaved depending on its use).
struct WeightMatrix {
  TensorType type = TensorType::F32;
  int64_t cols = 0;
  int64_t rows = 0;
  uint64_t row_bytes = 0;
  const uint8_t* data = nullptr;
  bool interleaved = false;
  const uint8_t* tail = nullptr;
  int64_t split_row = 0;  // meaningful only with a tail
  bool as_interleaved = false;

  const void* row(int64_t r) const {
    if (tail && r >= split_row) return tail + static_cast<uint64_t>(r - split_row) * row_bytes;
    return data + static_cast<uint64_t>(r) * row_bytes;
  }
};

}  // namespace fi
