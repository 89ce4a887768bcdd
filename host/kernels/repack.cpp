#include "host/kernels/repack.h"

#include <cstring>

#include "host/kernels/quant.h"
#include "io/error.h"

namespace fi {

namespace {

void interleave_group(int64_t cols, uint8_t* base) {
  const uint64_t row_bytes = fi::row_bytes(TensorType::Q4_0, static_cast<uint64_t>(cols));
  const int64_t blocks = cols / kQK;
  thread_local std::vector<uint8_t> original;
  original.assign(base, base + row_bytes * kInterleavedRows);
  auto* out = reinterpret_cast<BlockQ4_0x8*>(base);
  for (int64_t b = 0; b < blocks; ++b) {
    for (int r = 0; r < kInterleavedRows; ++r) {
      const auto* block = reinterpret_cast<const BlockQ4_0*>(original.data() + r * row_bytes) + b;
      out[b].d[r] = block->d;
      for (int j = 0; j < 4; ++j)
        for (int i = 0; i < 4; ++i) out[b].qs[32 * j + 4 * r + i] = block->qs[4 * j + i];
    }
  }
}

}  // namespace

bool can_interleave(const WeightMatrix& w) {
  return simd_kernels_active() && w.type == TensorType::Q4_0 && !w.interleaved && w.rows % kInterleavedRows == 0;
}

void interleave_rows(WeightMatrix& w, uint8_t* bytes) {
  if (!can_interleave(w)) fail("internal: matrix cannot be interleaved");
  for (int64_t group = 0; group < w.rows / kInterleavedRows; ++group)
    interleave_group(w.cols, bytes + group * w.row_bytes * kInterleavedRows);
  w.interleaved = true;
}

void interleave_rows(ThreadPool& pool, int64_t cols, int64_t rows, uint8_t* bytes) {
  if (rows % kInterleavedRows != 0) fail("internal: %lld rows cannot be interleaved", static_cast<long long>(rows));
  const uint64_t group_bytes = fi::row_bytes(TensorType::Q4_0, static_cast<uint64_t>(cols)) * kInterleavedRows;
  pool.parallel_for(rows / kInterleavedRows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t group = begin; group < end; ++group) interleave_group(cols, bytes + group * group_bytes);
  });
}

void extract_row(const WeightMatrix& w, int64_t r, BlockQ4_0* out) {
  const auto* group = static_cast<const BlockQ4_0x8*>(w.row(r / kInterleavedRows * kInterleavedRows));
  const int lane = static_cast<int>(r % kInterleavedRows);
  for (int64_t b = 0; b < w.cols / kQK; ++b) {
    out[b].d = group[b].d[lane];
    for (int j = 0; j < 4; ++j)
      for (int i = 0; i < 4; ++i) out[b].qs[4 * j + i] = group[b].qs[32 * j + 4 * lane + i];
  }
}

}  // namespace fi
