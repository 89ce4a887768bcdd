#include "host/memory/weights.h"

namespace fi {

WeightMatrix matrix_shape(const TensorInfo& info) {
  WeightMatrix m;
  m.type = info.type;
  m.cols = static_cast<int64_t>(info.shape[0]);
  m.rows = static_cast<int64_t>(info.rows());
  m.row_bytes = row_bytes(info.type, info.shape[0]);
  return m;
}

}  // namespace fi
