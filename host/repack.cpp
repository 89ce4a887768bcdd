#include "host/repack.h"

#include <cstring>
#include <vector>

#include "host/quant.h"
#include "io/error.h"

namespace fi {

bool can_interleave(const WeightMatrix& w) {
  return simd_kernels_active() && w.type == TensorType::Q4_0 && !w.interleaved && w.rows % kInterleavedRows == 0;
}

void interleave_rows(WeightMatrix& w, uint8_t* bytes) {
  if (!can_interleave(w)) fail("internal: matrix cannot be interleaved");
  const int64_t blocks = w.cols / kQK;
  const uint64_t group_bytes = w.row_bytes * kInterleavedRows;
  std::vector<uint8_t> original(group_bytes);
  for (int64_t group = 0; group < w.rows / kInterleavedRows; ++group) {
    uint8_t* base = bytes + group * group_bytes;
    std::memcpy(original.data(), base, group_bytes);
    auto* out = reinterpret_cast<BlockQ4_0x8*>(base);
    for (int64_t b = 0; b < blocks; ++b) {
      for (int r = 0; r < kInterleavedRows; ++r) {
        const auto* block = reinterpret_cast<const BlockQ4_0*>(original.data() + r * w.row_bytes) + b;
        out[b].d[r] = block->d;
        for (int j = 0; j < 4; ++j)
          for (int i = 0; i < 4; ++i) out[b].qs[32 * j + 4 * r + i] = block->qs[4 * j + i];
      }
    }
  }
  w.interleaved = true;
}

void extract_row(const WeightMatrix& w, int64_t r, BlockQ4_0* out) {
  const auto* group = reinterpret_cast<const BlockQ4_0x8*>(w.data + (r / kInterleavedRows) * w.row_bytes * kInterleavedRows);
  const int lane = static_cast<int>(r % kInterleavedRows);
  for (int64_t b = 0; b < w.cols / kQK; ++b) {
    out[b].d = group[b].d[lane];
    for (int j = 0; j < 4; ++j)
      for (int i = 0; i < 4; ++i) out[b].qs[4 * j + i] = group[b].qs[32 * j + 4 * lane + i];
  }
}

}  // namespace fi
