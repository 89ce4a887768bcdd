#include "host/kernels/repack.h"

#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#include "host/kernels/quant.h"
#include "io/error.h"

namespace fi {

namespace {

// A type's x8 block is made of runs of one shape each; together they cover it exactly once (the
// permutation of repack.h).
enum class Shape : uint8_t {
  SideBySide,  // `count` bytes (2 or 4) of each row from `field`, laid side by side at `at`
  Quads,       // `count` runs of 4 bytes per row from `field`: x8 byte at + 32q + 4r + i = field[4q + i]
  BytesByRow,  // bytes field + g of each row at x8 byte at + 8g + r, g < count
};

struct Run {
  Shape shape;
  uint16_t at;
  uint16_t field;
  uint16_t count;
};

// Calls move(x8_offset, row, block_offset, bytes) for every piece of `run`, bytes a compile-time
// constant so that each piece is one plain load and store.
template <typename Move>
inline void for_each_piece(const Run& run, Move&& move) {
  using Two = std::integral_constant<size_t, 2>;
  using Four = std::integral_constant<size_t, 4>;
  using One = std::integral_constant<size_t, 1>;
  switch (run.shape) {
    case Shape::SideBySide:
      for (int r = 0; r < kInterleavedRows; ++r) {
        if (run.count == 2) move(run.at + 2 * r, r, run.field, Two{});
        else move(run.at + 4 * r, r, run.field, Four{});
      }
      break;
    case Shape::Quads:
      for (int q = 0; q < run.count; ++q)
        for (int r = 0; r < kInterleavedRows; ++r) move(run.at + 32 * q + 4 * r, r, run.field + 4 * q, Four{});
      break;
    case Shape::BytesByRow:
      for (int g = 0; g < run.count; ++g)
        for (int r = 0; r < kInterleavedRows; ++r) move(run.at + 8 * g + r, r, run.field + g, One{});
      break;
  }
}

constexpr Run side_by_side(int at, size_t field, int bytes) {
  return {Shape::SideBySide, static_cast<uint16_t>(at), static_cast<uint16_t>(field), static_cast<uint16_t>(bytes)};
}
constexpr Run quads(int at, size_t field, int count) {
  return {Shape::Quads, static_cast<uint16_t>(at), static_cast<uint16_t>(field), static_cast<uint16_t>(count)};
}
constexpr Run bytes_by_row(int at, size_t field, int count) {
  return {Shape::BytesByRow, static_cast<uint16_t>(at), static_cast<uint16_t>(field), static_cast<uint16_t>(count)};
}

std::vector<Run> layout_of(TensorType type) {
  switch (type) {
    case TensorType::Q4_0: return {side_by_side(0, offsetof(BlockQ4_0, d), 2), quads(16, offsetof(BlockQ4_0, qs), 4)};
    case TensorType::Q4_K:
      return {side_by_side(0, offsetof(BlockQ4_K, d), 2), side_by_side(16, offsetof(BlockQ4_K, dmin), 2),
              quads(32, offsetof(BlockQ4_K, scales), 3), quads(128, offsetof(BlockQ4_K, qs), 32)};
    case TensorType::Q5_K:
      return {side_by_side(0, offsetof(BlockQ5_K, d), 2), side_by_side(16, offsetof(BlockQ5_K, dmin), 2),
              quads(32, offsetof(BlockQ5_K, scales), 3), quads(128, offsetof(BlockQ5_K, qh), 8),
              quads(384, offsetof(BlockQ5_K, qs), 32)};
    case TensorType::Q6_K:
      return {side_by_side(0, offsetof(BlockQ6_K, d), 2), bytes_by_row(16, offsetof(BlockQ6_K, scales), 16),
              quads(144, offsetof(BlockQ6_K, ql), 32), quads(1168, offsetof(BlockQ6_K, qh), 16)};
    case TensorType::Q2_K:
      return {side_by_side(0, offsetof(BlockQ2_K, d), 2), side_by_side(16, offsetof(BlockQ2_K, dmin), 2),
              bytes_by_row(32, offsetof(BlockQ2_K, scales), 16), quads(160, offsetof(BlockQ2_K, qs), 16)};
    case TensorType::Q3_K:
      return {side_by_side(0, offsetof(BlockQ3_K, d), 2), quads(16, offsetof(BlockQ3_K, scales), 3),
              quads(112, offsetof(BlockQ3_K, hmask), 8), quads(368, offsetof(BlockQ3_K, qs), 16)};
    case TensorType::IQ4_XS:
      return {side_by_side(0, offsetof(BlockIQ4_XS, d), 2), side_by_side(16, offsetof(BlockIQ4_XS, scales_h), 2),
              side_by_side(32, offsetof(BlockIQ4_XS, scales_l), 4), quads(64, offsetof(BlockIQ4_XS, qs), 32)};
    default: fail("internal: %s rows are not interleaved", type_name(type));
  }
}

const std::vector<Run>& layout(TensorType type) {
  static const std::vector<std::vector<Run>> layouts = [] {
    std::vector<std::vector<Run>> all(kTensorTypeCount);
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
  const std::vector<Run>& runs = layout(type);
  thread_local std::vector<uint8_t> original;
  original.assign(base, base + row_bytes * kInterleavedRows);
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* x8 = base + b * traits.block_bytes * kInterleavedRows;
    const uint8_t* first = original.data() + b * traits.block_bytes;
    for (const Run& run : runs)
      for_each_piece(run, [&](int to, int row, int from, auto bytes) {
        std::memcpy(x8 + to, first + row * row_bytes + from, bytes);
      });
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

std::vector<uint16_t> interleaved_offsets(TensorType type) {
  const auto block_bytes = static_cast<size_t>(type_traits(type).block_bytes);
  constexpr uint16_t kUnset = UINT16_MAX;
  std::vector<uint16_t> offsets(block_bytes * kInterleavedRows, kUnset);
  for (const Run& run : layout(type))
    for_each_piece(run, [&](int to, int row, int from, auto bytes) {
      for (size_t i = 0; i < bytes; ++i)
        offsets[static_cast<size_t>(row) * block_bytes + static_cast<size_t>(from) + i] = static_cast<uint16_t>(to + i);
    });
  for (uint16_t offset : offsets)
    if (offset == kUnset) fail("internal: the %s layout leaves a byte unplaced", type_name(type));
  return offsets;
}

void extract_row(const WeightMatrix& w, int64_t r, void* out) {
  const TypeTraits& traits = type_traits(w.type);
  const auto* group = static_cast<const uint8_t*>(w.row(r / kInterleavedRows * kInterleavedRows));
  const int lane = static_cast<int>(r % kInterleavedRows);
  auto* blocks = static_cast<uint8_t*>(out);
  for (int64_t b = 0; b < w.cols / traits.block_elements; ++b)
    for (const Run& run : layout(w.type))
      for_each_piece(run, [&](int from, int row, int to, auto bytes) {
        if (row == lane)
          std::memcpy(blocks + b * traits.block_bytes + to, group + b * traits.block_bytes * kInterleavedRows + from, bytes);
      });
}

}  // namespace fi
