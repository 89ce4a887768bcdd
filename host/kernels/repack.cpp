#include "host/kernels/repack.h"

#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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
    case TensorType::IQ4_NL: return {side_by_side(0, offsetof(BlockIQ4_NL, d), 2), quads(16, offsetof(BlockIQ4_NL, qs), 4)};
    case TensorType::Q8_0: return {side_by_side(0, offsetof(BlockQ8_0, d), 2), quads(16, offsetof(BlockQ8_0, qs), 8)};
    case TensorType::Q4_1:
      return {side_by_side(0, offsetof(BlockQ4_1, d), 2), side_by_side(16, offsetof(BlockQ4_1, m), 2),
              quads(32, offsetof(BlockQ4_1, qs), 4)};
    case TensorType::Q5_0:
      return {side_by_side(0, offsetof(BlockQ5_0, d), 2), side_by_side(16, offsetof(BlockQ5_0, qh), 4),
              quads(48, offsetof(BlockQ5_0, qs), 4)};
    case TensorType::Q5_1:
      return {side_by_side(0, offsetof(BlockQ5_1, d), 2), side_by_side(16, offsetof(BlockQ5_1, m), 2),
              side_by_side(32, offsetof(BlockQ5_1, qh), 4), quads(64, offsetof(BlockQ5_1, qs), 4)};
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

#if defined(__SSE2__)
// Quads q0..q0+3 of rows 0..7 (each row's field at row * row_bytes) to x8 bytes 32q + 4r: two 4 x 4
// transposes of 32-bit words.
inline void transpose_four_quads(uint8_t* x8, const uint8_t* field, uint64_t row_bytes) {
  for (int half = 0; half < 2; ++half) {
    const uint8_t* rows = field + 4 * half * row_bytes;
    const __m128i a0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows));
    const __m128i a1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows + row_bytes));
    const __m128i a2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows + 2 * row_bytes));
    const __m128i a3 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows + 3 * row_bytes));
    const __m128i low01 = _mm_unpacklo_epi32(a0, a1), low23 = _mm_unpacklo_epi32(a2, a3);
    const __m128i high01 = _mm_unpackhi_epi32(a0, a1), high23 = _mm_unpackhi_epi32(a2, a3);
    uint8_t* to = x8 + 16 * half;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(to), _mm_unpacklo_epi64(low01, low23));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(to + 32), _mm_unpackhi_epi64(low01, low23));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(to + 64), _mm_unpacklo_epi64(high01, high23));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(to + 96), _mm_unpackhi_epi64(high01, high23));
  }
}

// Bytes field + g (g < 16) of rows 0..7 to x8 bytes 8g + r: an 8 x 16 transpose of bytes.
inline void transpose_sixteen_bytes(uint8_t* x8, const uint8_t* field, uint64_t row_bytes) {
  __m128i a[kInterleavedRows];
  for (int r = 0; r < kInterleavedRows; ++r) a[r] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(field + r * row_bytes));
  __m128i pairs[8], fours[8];
  for (int p = 0; p < 4; ++p) {  // rows 2p, 2p+1 byte by byte: groups 0-7, then 8-15
    pairs[2 * p] = _mm_unpacklo_epi8(a[2 * p], a[2 * p + 1]);
    pairs[2 * p + 1] = _mm_unpackhi_epi8(a[2 * p], a[2 * p + 1]);
  }
  for (int h = 0; h < 2; ++h)    // rows 0-3 (h = 0) or 4-7, two bytes at a time: groups 0-3, 4-7, 8-11, 12-15
    for (int part = 0; part < 2; ++part) {
      const __m128i first = pairs[4 * h + part], second = pairs[4 * h + 2 + part];
      fours[4 * h + 2 * part] = _mm_unpacklo_epi16(first, second);
      fours[4 * h + 2 * part + 1] = _mm_unpackhi_epi16(first, second);
    }
  for (int q = 0; q < 4; ++q) {  // rows 0-3 beside rows 4-7: groups 4q, 4q+1, then 4q+2, 4q+3
    _mm_storeu_si128(reinterpret_cast<__m128i*>(x8 + 32 * q), _mm_unpacklo_epi32(fours[q], fours[4 + q]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(x8 + 32 * q + 16), _mm_unpackhi_epi32(fours[q], fours[4 + q]));
  }
}
#endif

// Moves one run's pieces from the 8 plain blocks at `first` (rows row_bytes apart) into x8.
inline void move_run(const Run& run, uint8_t* x8, const uint8_t* first, uint64_t row_bytes) {
#if defined(__SSE2__)
  if (run.shape == Shape::Quads && run.count % 4 == 0) {
    for (int q = 0; q < run.count; q += 4) transpose_four_quads(x8 + run.at + 32 * q, first + run.field + 4 * q, row_bytes);
    return;
  }
  if (run.shape == Shape::BytesByRow && run.count == 16) {
    transpose_sixteen_bytes(x8 + run.at, first + run.field, row_bytes);
    return;
  }
#endif
  for_each_piece(run, [&](int to, int row, int from, auto bytes) { std::memcpy(x8 + to, first + row * row_bytes + from, bytes); });
}

// Copies a group's rows aside before they are re-arranged in place. Plain vector moves: glibc's
// memmove (rep movsb for these 2-10 KiB copies) read the rows from DRAM a third slower on the AMD
// EPYC development machine, and this copy is half of an arriving expert's interleaving.
inline void copy_group(uint8_t* to, const uint8_t* from, uint64_t bytes) {
  uint64_t i = 0;
#if defined(__SSE2__)
  for (; i + 64 <= bytes; i += 64) {
    const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + i));
    const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + i + 16));
    const __m128i v2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + i + 32));
    const __m128i v3 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + i + 48));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(to + i), v0);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(to + i + 16), v1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(to + i + 32), v2);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(to + i + 48), v3);
  }
#endif
  std::memcpy(to + i, from + i, bytes - i);
}

}  // namespace

void interleave_group_to(TensorType type, int64_t cols, const uint8_t* rows, uint8_t* group) {
  const TypeTraits& traits = type_traits(type);
  const uint64_t row_bytes = fi::row_bytes(type, static_cast<uint64_t>(cols));
  const int64_t blocks = cols / traits.block_elements;
  const std::vector<Run>& runs = layout(type);
  // The rows are copied aside in order first, also when `group` is elsewhere: the pieces come from
  // 8 rows at once, which the hardware's prefetching follows badly from DRAM (plain Q8_0 experts
  // computed through groups interleaved straight from their rows ran at two thirds the speed).
  thread_local std::vector<uint8_t> original;
  original.resize(row_bytes * kInterleavedRows);
  copy_group(original.data(), rows, original.size());
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* x8 = group + b * traits.block_bytes * kInterleavedRows;
    const uint8_t* first = original.data() + b * traits.block_bytes;
    for (const Run& run : runs) move_run(run, x8, first, row_bytes);
  }
}

bool interleaves(TensorType type) { return simd_kernels_active() && interleavable_type(type); }

bool can_interleave(const WeightMatrix& w) {
  return interleaves(w.type) && !w.interleaved && w.rows % kInterleavedRows == 0;
}

void interleave_rows(WeightMatrix& w, uint8_t* bytes) {
  if (!can_interleave(w)) fail("internal: matrix cannot be interleaved");
  for (int64_t group = 0; group < w.rows / kInterleavedRows; ++group) {
    uint8_t* rows = bytes + group * w.row_bytes * kInterleavedRows;
    interleave_group_to(w.type, w.cols, rows, rows);
  }
  w.interleaved = true;
}

void interleave_rows(ThreadPool& pool, TensorType type, int64_t cols, int64_t rows, uint8_t* bytes) {
  if (rows % kInterleavedRows != 0) fail("internal: %lld rows cannot be interleaved", static_cast<long long>(rows));
  const uint64_t group_bytes = fi::row_bytes(type, static_cast<uint64_t>(cols)) * kInterleavedRows;
  pool.parallel_for(rows / kInterleavedRows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t group = begin; group < end; ++group) {
      uint8_t* rows = bytes + group * group_bytes;
      interleave_group_to(type, cols, rows, rows);
    }
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
