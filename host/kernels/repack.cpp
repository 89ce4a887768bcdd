#include "host/kernels/repack.h"

#include <cstddef>
#include <cstring>
#include <vector>

#include "host/kernels/quant.h"
#include "io/error.h"

namespace fi {

namespace {

// One piece of an x8 block: `bytes` bytes at `x8_offset` come from row `row`'s block at
// `block_offset`. A type's pieces cover its x8 block exactly once (the permutation of repack.h).
struct Piece {
  uint16_t x8_offset;
  uint8_t row;
  uint8_t bytes;
  uint16_t block_offset;
};

// `count` per-row values of `bytes` bytes each at `field` in the block, laid side by side at `at`.
void side_by_side(std::vector<Piece>& pieces, int at, int field, int bytes) {
  for (int r = 0; r < kInterleavedRows; ++r)
    pieces.push_back({static_cast<uint16_t>(at + bytes * r), static_cast<uint8_t>(r), static_cast<uint8_t>(bytes),
                      static_cast<uint16_t>(field)});
}

// `quads` runs of 4 bytes per row from `field`: x8 byte at + 32q + 4r + i = field[4q + i].
void quads(std::vector<Piece>& pieces, int at, int field, int count) {
  for (int q = 0; q < count; ++q)
    for (int r = 0; r < kInterleavedRows; ++r)
      pieces.push_back({static_cast<uint16_t>(at + 32 * q + 4 * r), static_cast<uint8_t>(r), 4,
                        static_cast<uint16_t>(field + 4 * q)});
}

// Bytes `field` + g of each row at x8 byte at + 8g + r.
void bytes_by_row(std::vector<Piece>& pieces, int at, int field, int count) {
  for (int g = 0; g < count; ++g)
    for (int r = 0; r < kInterleavedRows; ++r)
      pieces.push_back({static_cast<uint16_t>(at + 8 * g + r), static_cast<uint8_t>(r), 1, static_cast<uint16_t>(field + g)});
}

std::vector<Piece> layout_of(TensorType type) {
  std::vector<Piece> p;
  switch (type) {
    case TensorType::Q4_0:
      side_by_side(p, 0, offsetof(BlockQ4_0, d), 2);
      quads(p, 16, offsetof(BlockQ4_0, qs), 4);
      break;
    case TensorType::Q4_K:
      side_by_side(p, 0, offsetof(BlockQ4_K, d), 2);
      side_by_side(p, 16, offsetof(BlockQ4_K, dmin), 2);
      quads(p, 32, offsetof(BlockQ4_K, scales), 3);
      quads(p, 128, offsetof(BlockQ4_K, qs), 32);
      break;
    case TensorType::Q5_K:
      side_by_side(p, 0, offsetof(BlockQ5_K, d), 2);
      side_by_side(p, 16, offsetof(BlockQ5_K, dmin), 2);
      quads(p, 32, offsetof(BlockQ5_K, scales), 3);
      quads(p, 128, offsetof(BlockQ5_K, qh), 8);
      quads(p, 384, offsetof(BlockQ5_K, qs), 32);
      break;
    case TensorType::Q6_K:
      side_by_side(p, 0, offsetof(BlockQ6_K, d), 2);
      bytes_by_row(p, 16, offsetof(BlockQ6_K, scales), 16);
      quads(p, 144, offsetof(BlockQ6_K, ql), 32);
      quads(p, 1168, offsetof(BlockQ6_K, qh), 16);
      break;
    case TensorType::Q2_K:
      side_by_side(p, 0, offsetof(BlockQ2_K, d), 2);
      side_by_side(p, 16, offsetof(BlockQ2_K, dmin), 2);
      bytes_by_row(p, 32, offsetof(BlockQ2_K, scales), 16);
      quads(p, 160, offsetof(BlockQ2_K, qs), 16);
      break;
    case TensorType::Q3_K:
      side_by_side(p, 0, offsetof(BlockQ3_K, d), 2);
      quads(p, 16, offsetof(BlockQ3_K, scales), 3);
      quads(p, 112, offsetof(BlockQ3_K, hmask), 8);
      quads(p, 368, offsetof(BlockQ3_K, qs), 16);
      break;
    case TensorType::IQ4_XS:
      side_by_side(p, 0, offsetof(BlockIQ4_XS, d), 2);
      side_by_side(p, 16, offsetof(BlockIQ4_XS, scales_h), 2);
      side_by_side(p, 32, offsetof(BlockIQ4_XS, scales_l), 4);
      quads(p, 64, offsetof(BlockIQ4_XS, qs), 32);
      break;
    default: fail("internal: %s rows are not interleaved", type_name(type));
  }
  return p;
}

const std::vector<Piece>& layout(TensorType type) {
  static const std::vector<std::vector<Piece>> layouts = [] {
    std::vector<std::vector<Piece>> all(kTensorTypeCount);
    for (size_t i = 0; i < kTensorTypeCount; ++i)
      if (interleavable_type(kTensorTypes[i])) all[i] = layout_of(kTensorTypes[i]);
    return all;
  }();
  for (size_t i = 0; i < kTensorTypeCount; ++i)
    if (kTensorTypes[i] == type && !layouts[i].empty()) return layouts[i];
  fail("internal: %s rows are not interleaved", type_name(type));
}

void interleave_group(TensorType type, int64_t cols, uint8_t* base) {
  const TypeTraits& traits = type_traits(type);
  const uint64_t row_bytes = fi::row_bytes(type, static_cast<uint64_t>(cols));
  const int64_t blocks = cols / traits.block_elements;
  const std::vector<Piece>& pieces = layout(type);
  thread_local std::vector<uint8_t> original;
  original.assign(base, base + row_bytes * kInterleavedRows);
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* x8 = base + b * traits.block_bytes * kInterleavedRows;
    const uint8_t* first = original.data() + b * traits.block_bytes;
    for (const Piece& piece : pieces)
      std::memcpy(x8 + piece.x8_offset, first + piece.row * row_bytes + piece.block_offset, piece.bytes);
  }
}

}  // namespace

bool interleaves(TensorType type) { return simd_kernels_active() && interleavable_type(type); }

bool can_interleave(const WeightMatrix& w) {
  return interleaves(w.type) && !w.interleaved && w.rows % kInterleavedRows == 0;
}

void interleave_rows(WeightMatrix& w, uint8_t* bytes) {
  if (!can_interleave(w)) fail("internal: matrix cannot be interleaved");
  for (int64_t group = 0; group < w.rows / kInterleavedRows; ++group)
    interleave_group(w.type, w.cols, bytes + group * w.row_bytes * kInterleavedRows);
  w.interleaved = true;
}

void interleave_rows(ThreadPool& pool, TensorType type, int64_t cols, int64_t rows, uint8_t* bytes) {
  if (rows % kInterleavedRows != 0) fail("internal: %lld rows cannot be interleaved", static_cast<long long>(rows));
  const uint64_t group_bytes = fi::row_bytes(type, static_cast<uint64_t>(cols)) * kInterleavedRows;
  pool.parallel_for(rows / kInterleavedRows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t group = begin; group < end; ++group) interleave_group(type, cols, bytes + group * group_bytes);
  });
}

void extract_row(const WeightMatrix& w, int64_t r, void* out) {
  const TypeTraits& traits = type_traits(w.type);
  const auto* group = static_cast<const uint8_t*>(w.row(r / kInterleavedRows * kInterleavedRows));
  const int lane = static_cast<int>(r % kInterleavedRows);
  auto* blocks = static_cast<uint8_t*>(out);
  for (int64_t b = 0; b < w.cols / traits.block_elements; ++b)
    for (const Piece& piece : layout(w.type))
      if (piece.row == lane)
        std::memcpy(blocks + b * traits.block_bytes + piece.block_offset,
                    group + b * traits.block_bytes * kInterleavedRows + piece.x8_offset, piece.bytes);
}

}  // namespace fi
