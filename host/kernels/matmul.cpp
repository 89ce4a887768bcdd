#include "host/kernels/matmul.h"

#include <algorithm>

#include <immintrin.h>

#include "host/kernels/quant.h"
#include "host/kernels/repack.h"
#include "io/error.h"

namespace fi {

void quantize_batch(ThreadPool& pool, TensorType weight_type, const float* x, int64_t cols, int64_t tokens,
                    QuantizedBatch& out) {
  out.weight_type = weight_type;
  out.cols = cols;
  out.tokens = tokens;
  out.row_bytes = activation_row_bytes(weight_type, cols);
  if (out.bytes.size() < out.row_bytes * static_cast<size_t>(tokens)) out.bytes.resize(out.row_bytes * tokens);
  pool.parallel_for(tokens, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      quantize_activations(weight_type, x + t * cols, out.bytes.data() + t * out.row_bytes, cols);
  });
}

namespace {

// Rows [first_row, first_row + rows) stored contiguously at `data` (one part of a split matrix).
struct RowRange {
  const uint8_t* data;
  int64_t first_row;
  int64_t rows;
};

// Groups of 8 interleaved rows, two per kernel call (the AVX-512 kernels compute two side by side;
// a group's results are the same either way).
constexpr int64_t kGroupsPerCall = 2;

void matmul_interleaved(ThreadPool& pool, const WeightMatrix& w, RowRange part, const QuantizedBatch& x, float* y) {
  const int64_t groups = part.rows / kInterleavedRows;
  const uint64_t group_bytes = w.row_bytes * kInterleavedRows;
  // Small chunks only matter when a thread falls behind and another takes over the rest of its range.
  const int64_t grain = 2 * kGroupsPerCall;
  pool.parallel_for_contiguous(groups, grain, [&](int64_t begin, int64_t end) {
    float out[kMaxTokensPerDot * kGroupsPerCall * kInterleavedRows];
    for (int64_t g = begin; g < end; g += kGroupsPerCall) {
      const int64_t count = std::min(kGroupsPerCall, end - g);
      const int64_t first = part.first_row + g * kInterleavedRows;
      const auto rows = static_cast<size_t>(count * kInterleavedRows);
      // The next call's groups, requested now: the hardware prefetchers alone keep too few reads
      // in flight for these kernels (one thread streamed 9 GB/s of Q6_K without, 17 GB/s with).
      const uint8_t* next = part.data + (g + count) * group_bytes;
      const uint64_t next_bytes = static_cast<uint64_t>(std::min(kGroupsPerCall, groups - g - count)) * group_bytes;
      for (uint64_t offset = 0; offset < next_bytes; offset += 64)
        _mm_prefetch(reinterpret_cast<const char*>(next + offset), _MM_HINT_T0);
      for (int64_t t = 0; t < x.tokens; t += kMaxTokensPerDot) {
        const int tokens = static_cast<int>(std::min<int64_t>(kMaxTokensPerDot, x.tokens - t));
        vec_dot_interleaved(w.type, w.cols, part.data + g * group_bytes, count, x.row(t), x.row_bytes, tokens, out, rows);
        for (int k = 0; k < tokens; ++k)
          for (size_t r = 0; r < rows; ++r) y[(t + k) * w.rows + first + static_cast<int64_t>(r)] = out[k * rows + r];
      }
    }
  });
}

void matmul_rows(ThreadPool& pool, const WeightMatrix& w, RowRange part, const QuantizedBatch& x, float* y) {
  // Rows are handed out in small groups so a thread that falls behind is covered to the end;
  // within a group each weight row is read from memory once and reused from cache for every token.
  const int64_t groups_per_thread = 8;
  const int64_t grain = std::max<int64_t>(1, std::min<int64_t>(64, part.rows / (pool.size() * groups_per_thread)));
  pool.parallel_for_contiguous(part.rows, grain, [&](int64_t begin, int64_t end) {
    float out[kMaxTokensPerDot];
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* row = part.data + static_cast<uint64_t>(r) * w.row_bytes;
      for (int64_t t = 0; t < x.tokens; t += kMaxTokensPerDot) {
        const int count = static_cast<int>(std::min<int64_t>(kMaxTokensPerDot, x.tokens - t));
        vec_dot_tokens(w.type, w.cols, row, x.row(t), x.row_bytes, count, out);
        for (int k = 0; k < count; ++k) y[(t + k) * w.rows + part.first_row + r] = out[k];
      }
    }
  });
}

}  // namespace

WeightMatrix row_slice(const WeightMatrix& w, int64_t first, int64_t count) {
  if (first < 0 || count < 0 || first + count > w.rows)
    fail("internal: rows %lld..%lld of a matrix of %lld", static_cast<long long>(first),
         static_cast<long long>(first + count), static_cast<long long>(w.rows));
  if (w.interleaved && (first % kInterleavedRows != 0 || count % kInterleavedRows != 0))
    fail("internal: an interleaved matrix sliced at row %lld", static_cast<long long>(first));
  WeightMatrix slice = w;
  slice.rows = count;
  const int64_t head_rows = w.tail ? w.split_row : w.rows;
  if (first >= head_rows) {  // wholly in the streamed part
    slice.data = w.tail + static_cast<uint64_t>(first - head_rows) * w.row_bytes;
    slice.tail = nullptr;
    slice.split_row = 0;
    return slice;
  }
  slice.data = w.data + static_cast<uint64_t>(first) * w.row_bytes;
  if (w.tail && first + count > head_rows) {
    slice.split_row = head_rows - first;
  } else {
    slice.tail = nullptr;
    slice.split_row = 0;
  }
  return slice;
}

void matmul(ThreadPool& pool, const WeightMatrix& w, const QuantizedBatch& x, float* y) {
  // Every row is computed the same way whichever part holds it, so splitting never changes a result.
  const int64_t head_rows = w.tail ? w.split_row : w.rows;
  const RowRange parts[2] = {{w.data, 0, head_rows}, {w.tail, head_rows, w.rows - head_rows}};
  for (const RowRange& part : parts) {
    if (part.rows == 0) continue;
    if (w.interleaved) matmul_interleaved(pool, w, part, x, y);
    else matmul_rows(pool, w, part, x, y);
  }
}

}  // namespace fi
