#include "host/matmul.h"

#include "host/quant.h"

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

void matmul(ThreadPool& pool, const WeightMatrix& w, const QuantizedBatch& x, float* y) {
  // Rows are handed out in small groups so both cores stay busy to the end; within a group each
  // weight row is read from memory once and reused from cache for every token of the batch.
  const int64_t groups_per_thread = 8;
  const int64_t grain = std::max<int64_t>(1, std::min<int64_t>(64, w.rows / (pool.size() * groups_per_thread)));
  pool.parallel_for(w.rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const void* row = w.row(r);
      for (int64_t t = 0; t < x.tokens; ++t) y[t * w.rows + r] = vec_dot(w.type, w.cols, row, x.row(t));
    }
  });
}

}  // namespace fi
