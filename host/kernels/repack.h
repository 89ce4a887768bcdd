#pragma once
// CPU-side weight layouts. Matrices of the types below are re-arranged in place into groups of 8
// rows interleaved block by block: for each block index, the 8 rows' blocks become one x8 block in
// which every 32-byte vector holds 4 consecutive code bytes of each of the 8 rows (row r in 32-bit
// lane r), and the rows' scales lie side by side, so one instruction stream computes 8 rows' dot
// products and conversion, scaling and accumulation happen once per 8 rows instead of once per row.
// The K-quants' packed 6-bit scales stay packed (the layout must fit in place), word-interleaved so
// that the 8 rows' scales decode together with a few vector operations per super-block.
//
// Groups are independent: a matrix split at any multiple of 8 rows (the planner's row groups) is
// interleaved part by part, and streamed rows are interleaved as they arrive.
#include <cstdint>
#include <vector>

#include "host/kernels/matrix.h"
#include "host/kernels/quant.h"
#include "host/kernels/thread_pool.h"

namespace fi {

constexpr int kInterleavedRows = 8;

// Byte offsets inside one x8 block (8 blocks of the type; row r, lane r):
//   Q4_0   (144):  d[8] @0; qs @16: byte 32j + 4r + i = qs[4j + i]
//   IQ4_NL (144):  as Q4_0
//   Q8_0   (272):  d[8] @0; qs @16: byte 32j + 4r + i = qs[4j + i] (j < 8)
//   Q4_1   (160):  d[8] @0, m[8] @16; qs @32 as Q4_0's
//   Q5_0   (176):  d[8] @0; qh @16: byte 4r + i = qh[i]; qs @48 as Q4_0's
//   Q5_1   (192):  d[8] @0, m[8] @16; qh @32 as Q5_0's; qs @64 as Q4_0's
//   Q4_K  (1152):  d[8] @0, dmin[8] @16; scales @32: byte 32k + 4r + i = scales[4k + i];
//                  qs @128: byte 256c + 32j + 4r + i = qs[32c + 4j + i]
//   Q5_K  (1408):  as Q4_K, with qh @128: byte 32j + 4r + i = qh[4j + i]; qs @384
//   Q6_K  (1680):  d[8] @0; scales @16: byte 8g + r = scales[g]; ql @144: byte 256(2h + k) + 32j + 4r + i
//                  = ql[64h + 32k + 4j + i]; qh @1168: byte 256h + 32j + 4r + i = qh[32h + 4j + i]
//   Q2_K   (672):  d[8] @0, dmin[8] @16; scales @32: byte 8g + r = scales[g];
//                  qs @160: byte 256h + 32m + 4r + i = qs[32h + 4m + i]
//   Q3_K   (880):  d[8] @0; scales @16: byte 32k + 4r + i = scales[4k + i];
//                  hmask @112: byte 32m + 4r + i = hmask[4m + i]; qs @368 as Q2_K's
//   IQ4_XS (1088): d[8] @0, scales_h[8] @16; scales_l @32: byte 4r + i = scales_l[i];
//                  qs @64: byte 128s + 32m + 4r + i = qs[16s + 4m + i]
// (d etc. as 8 consecutive fp16/uint16, row r's at index r.)
constexpr bool interleavable_type(TensorType type) {
  return type == TensorType::Q4_0 || type == TensorType::Q4_1 || type == TensorType::Q5_0 || type == TensorType::Q5_1 ||
         type == TensorType::Q8_0 || type == TensorType::IQ4_NL || type == TensorType::Q4_K || type == TensorType::Q5_K ||
         type == TensorType::Q6_K || type == TensorType::Q2_K || type == TensorType::Q3_K || type == TensorType::IQ4_XS;
}

// Types whose row-at-a-time kernels give the interleaved kernels' bits (quant_x86.inc). matmul
// computes the plain rows of the other interleavable types that must give those bits
// (WeightMatrix::as_interleaved) 8 at a time through an interleaved copy in cache, so rows read on
// demand (experts arriving from the disk) may be computed as they arrive.
constexpr bool row_kernels_match_interleaved(TensorType type) {
  return type == TensorType::Q4_K || type == TensorType::Q5_K || type == TensorType::Q6_K || type == TensorType::Q2_K ||
         type == TensorType::Q3_K || type == TensorType::IQ4_XS;
}

// Whether matrices of `type` are interleaved with the kernels in use (SIMD only).
bool interleaves(TensorType type);
// Whether interleave_rows applies to this matrix with the kernels in use.
bool can_interleave(const WeightMatrix& w);
// Re-arranges `bytes` (the matrix's rows, rows % 8 == 0) in place and marks the matrix interleaved.
void interleave_rows(WeightMatrix& w, uint8_t* bytes);
// The same on `rows` rows of `cols` elements of `type`, spread over the pool (streamed rows are
// re-arranged as they arrive).
void interleave_rows(ThreadPool& pool, TensorType type, int64_t cols, int64_t rows, uint8_t* bytes);
// The 8 plain rows at `rows` (consecutive, `cols` elements of `type` each) interleaved into `group`
// (as many bytes): `rows` itself, or elsewhere, as matmul computes plain rows with the interleaved
// kernels.
void interleave_group_to(TensorType type, int64_t cols, const uint8_t* rows, uint8_t* group);
// Where each byte of a group's plain blocks lies in its x8 block: entry r * block_bytes + j is the
// offset in the x8 block of byte j of row r's block (the permutation the GPU undoes to compute
// from rows the CPU interleaved).
std::vector<uint16_t> interleaved_offsets(TensorType type);
// Row r of an interleaved matrix back in its type's plain blocks (tests and inspection).
void extract_row(const WeightMatrix& w, int64_t r, void* out);

}  // namespace fi
