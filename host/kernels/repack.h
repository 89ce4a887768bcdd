#pragma once
// CPU-side weight layouts. Q4_0 matrices are re-arranged in place into groups of 8 rows
// interleaved block by block (BlockQ4_0x8): one vector then holds four elements of each of the
// 8 rows, so a single instruction stream computes 8 rows' dot products and the int-to-float
// conversion and scaling happen once per 8 rows instead of once per row.
#include <cstdint>

#include "host/kernels/matrix.h"
#include "host/kernels/quant.h"
#include "host/kernels/thread_pool.h"

namespace fi {

constexpr int kInterleavedRows = 8;

struct BlockQ4_0x8 {
  uint16_t d[kInterleavedRows];  // the 8 rows' scales
  // Byte 32j + 4r + i holds row r's codes of elements 4j+i (low nibble) and 16+4j+i (high).
  uint8_t qs[kInterleavedRows * 16];
};
static_assert(sizeof(BlockQ4_0x8) == kInterleavedRows * 18);

// Whether interleave_rows applies to this matrix with the kernels in use.
bool can_interleave(const WeightMatrix& w);
// Re-arranges `bytes` (rows of Q4_0, rows % 8 == 0) in place and marks the matrix interleaved.
void interleave_rows(WeightMatrix& w, uint8_t* bytes);
// The same on `rows` rows of `cols` Q4_0 elements, spread over the pool (streamed rows are
// re-arranged as they arrive).
void interleave_rows(ThreadPool& pool, int64_t cols, int64_t rows, uint8_t* bytes);
// Row r of an interleaved matrix back in plain Q4_0 blocks (tests and inspection).
void extract_row(const WeightMatrix& w, int64_t r, BlockQ4_0* out);

}  // namespace fi
