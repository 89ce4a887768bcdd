#include "host/kernels/matmul.h"

#include <algorithm>
#include <tuple>
#include <vector>

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

// Groups of 8 interleaved rows, two per kernel call (the AVX-512 kernels compute two side by side;
// a group's results are the same either way).
constexpr int64_t kGroupsPerCall = 2;
constexpr int64_t kRowsPerCall = kGroupsPerCall * kInterleavedRows;

// Rows [first_row, first_row + rows) of one product's matrix, stored contiguously at `data` (a
// matrix, or one part of a split one), placed at `offset` in the rows all parts are divided by.
struct Part {
  const MatrixProduct* product;
  const uint8_t* data;
  int64_t first_row;
  int64_t rows;
  int64_t offset;
};

// Plain rows [begin, end) of a part: every row in one call when one call takes all the tokens;
// otherwise a few rows at a time through every block of tokens, while those rows are in cache.
void multiply_plain_rows(const Part& part, int64_t begin, int64_t end, const QuantizedBatch& x) {
  constexpr int64_t kRowsPerPass = 8;
  const MatrixProduct& product = *part.product;
  const WeightMatrix& w = *product.w;
  const int64_t step = product.tokens <= kMaxTokensPerDot ? end - begin : kRowsPerPass;
  for (int64_t r = begin; r < end; r += step) {
    const int64_t rows = std::min(step, end - r);
    for (int64_t t = 0; t < product.tokens; t += kMaxTokensPerDot) {
      const int count = static_cast<int>(std::min<int64_t>(kMaxTokensPerDot, product.tokens - t));
      vec_dot_rows(w.type, w.cols, part.data + static_cast<uint64_t>(r) * w.row_bytes, w.row_bytes, rows,
                   x.row(product.first_token + t), x.row_bytes, count, product.y + t * w.rows + part.first_row + r,
                   static_cast<size_t>(w.rows));
    }
  }
}

// Plain rows [begin, end) of a part that must give the interleaved bits where its type's row
// kernels give others: each whole group of 8 is interleaved into a copy in cache and computed from
// there, as it would be had the matrix been interleaved (the rows after the last whole group cannot
// be interleaved). Slower than the row kernels on rows streamed from DRAM (matvec of 4096-column
// Q8_0 rows at about half their rate), faster than interleaving the matrix in place first.
void multiply_plain_groups(const Part& part, int64_t begin, int64_t end, const QuantizedBatch& x) {
  const MatrixProduct& product = *part.product;
  const WeightMatrix& w = *product.w;
  if (begin % kInterleavedRows != 0)
    fail("internal: plain rows computed in groups from row %lld", static_cast<long long>(begin));
  thread_local std::vector<uint8_t> group;
  group.resize(w.row_bytes * kInterleavedRows);
  const int64_t whole = begin + (end - begin) / kInterleavedRows * kInterleavedRows;
  for (int64_t r = begin; r < whole; r += kInterleavedRows) {
    interleave_group_to(w.type, w.cols, part.data + static_cast<uint64_t>(r) * w.row_bytes, group.data());
    for (int64_t t = 0; t < product.tokens; t += kMaxTokensPerDot) {
      const int count = static_cast<int>(std::min<int64_t>(kMaxTokensPerDot, product.tokens - t));
      vec_dot_interleaved(w.type, w.cols, group.data(), 1, x.row(product.first_token + t), x.row_bytes, count,
                          product.y + t * w.rows + part.first_row + r, static_cast<size_t>(w.rows), 0);
    }
  }
  multiply_plain_rows(part, whole, end, x);
}

// Rows [begin, end) of a part, local to it.
void multiply_rows(const Part& part, int64_t begin, int64_t end, const QuantizedBatch& x) {
  const MatrixProduct& product = *part.product;
  const WeightMatrix& w = *product.w;
  float* y = product.y;
  const int64_t tokens = product.tokens;
  auto input = [&](int64_t t) { return x.row(product.first_token + t); };
  if (!w.interleaved) {
    if (w.as_interleaved && interleaves(w.type) && !row_kernels_match_interleaved(w.type))
      multiply_plain_groups(part, begin, end, x);
    else multiply_plain_rows(part, begin, end, x);
    return;
  }
  const uint64_t group_bytes = w.row_bytes * kInterleavedRows;
  const int64_t groups = part.rows / kInterleavedRows;
  // A few tokens: the whole chunk in one call. More: pair by pair, every token block while the pair
  // is in cache. Either way the kernels request the groups after their own as they go (this
  // thread's next chunk, usually), once: with the first token block.
  const int64_t step = tokens <= kMaxTokensPerDot ? (end - begin) / kInterleavedRows : kGroupsPerCall;
  for (int64_t g = begin / kInterleavedRows; g < end / kInterleavedRows; g += step) {
    const int64_t count = std::min(step, end / kInterleavedRows - g);
    for (int64_t t = 0; t < tokens; t += kMaxTokensPerDot) {
      const int block = static_cast<int>(std::min<int64_t>(kMaxTokensPerDot, tokens - t));
      vec_dot_interleaved(w.type, w.cols, part.data + g * group_bytes, count, input(t), x.row_bytes, block,
                          y + t * w.rows + part.first_row + g * kInterleavedRows, static_cast<size_t>(w.rows),
                          t == 0 ? groups - g - count : 0);
    }
  }
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

void matmul(ThreadPool& pool, std::span<const MatrixProduct> products, const QuantizedBatch& x) {
  // Every part starts on a whole number of kernel calls, so a chunk never splits a call; a
  // matrix's resident and streamed parts are computed alike, so splitting never changes a result.
  constexpr size_t kMaxParts = 2 * kMaxProductsPerSection;
  if (products.size() > kMaxProductsPerSection)
    fail("internal: %zu matrix products in one section (at most %zu)", products.size(), kMaxProductsPerSection);
  MatrixProduct ranged[kMaxProductsPerSection];
  Part parts[kMaxParts];
  size_t part_count = 0;
  int64_t total = 0;
  for (size_t i = 0; i < products.size(); ++i) {
    MatrixProduct& p = ranged[i] = products[i];
    if (p.tokens < 0) p.tokens = x.tokens - p.first_token;
    if (p.first_token < 0 || p.tokens <= 0 || p.first_token + p.tokens > x.tokens)
      fail("internal: rows %lld..%lld of a batch of %lld", static_cast<long long>(p.first_token),
           static_cast<long long>(p.first_token + p.tokens), static_cast<long long>(x.tokens));
    const WeightMatrix& w = *p.w;
    if (!x.matches(w, x.tokens))
      fail("internal: a %s matrix of %lld columns against rows quantized for another", type_name(w.type),
           static_cast<long long>(w.cols));
    const int64_t head_rows = w.tail ? w.split_row : w.rows;
    for (const auto& [data, first, rows] : {std::tuple{w.data, int64_t{0}, head_rows},
                                            std::tuple{w.tail, head_rows, w.rows - head_rows}}) {
      if (rows == 0) continue;
      if (part_count == kMaxParts) fail("internal: more than %zu matrix parts in one section", kMaxParts);
      parts[part_count++] = {&p, data, first, rows, total};
      total += (rows + kRowsPerCall - 1) / kRowsPerCall * kRowsPerCall;
    }
  }
  // Chunks are small only so that a thread done first can help with what remains of another's range.
  const int64_t chunk_rows = std::clamp<int64_t>(total / (pool.size() * 8) / kRowsPerCall * kRowsPerCall,
                                                 kRowsPerCall, 4 * kRowsPerCall);
  pool.parallel_for_contiguous(total, chunk_rows, [&](int64_t begin, int64_t end) {
    for (size_t i = 0; i < part_count; ++i) {
      const Part& part = parts[i];
      const int64_t from = std::max(begin, part.offset) - part.offset;
      const int64_t to = std::min(end, part.offset + part.rows) - part.offset;
      if (from < to) multiply_rows(part, from, to, x);
    }
  });
}

void matmul(ThreadPool& pool, const WeightMatrix& w, const QuantizedBatch& x, float* y) {
  const MatrixProduct product{&w, y};
  matmul(pool, std::span<const MatrixProduct>(&product, 1), x);
}

}  // namespace fi
