#pragma once
// Matrix products of a weight matrix with a batch of activation rows, split over the pool.
#include <cstdint>
#include <span>
#include <vector>

#include "host/kernels/matrix.h"
#include "host/kernels/quant.h"
#include "host/kernels/thread_pool.h"

namespace fi {

// Activation rows already quantized for one weight type (shared by every matrix of that type).
struct QuantizedBatch {
  TensorType weight_type = TensorType::F32;
  int64_t cols = 0;
  int64_t tokens = 0;
  size_t row_bytes = 0;
  std::vector<uint8_t> bytes;

  const void* row(int64_t token) const { return bytes.data() + static_cast<size_t>(token) * row_bytes; }
  bool matches(const WeightMatrix& w, int64_t n_tokens) const {
    return activation_format(w.type) == activation_format(weight_type) && cols == w.cols && tokens == n_tokens;
  }
};

// Quantizes `tokens` rows of `cols` floats for weights of `weight_type`.
void quantize_batch(ThreadPool& pool, TensorType weight_type, const float* x, int64_t cols, int64_t tokens,
                    QuantizedBatch& out);

// Rows [first, first + count) of `w` as a matrix of their own (one expert's slice of a stacked
// tensor), on either side of a resident/streamed split or across it. Interleaved matrices are
// sliced at whole 8-row groups only.
WeightMatrix row_slice(const WeightMatrix& w, int64_t first, int64_t count);

// y[t * w.rows + r] = dot(w.row(r), x_t) for t < tokens.
void matmul(ThreadPool& pool, const WeightMatrix& w, const QuantizedBatch& x, float* y);

// One matrix's product with rows [first_token, first_token + tokens) of the quantized batch (all of
// them when tokens < 0): y[t * w.rows + r] for t counted from first_token.
struct MatrixProduct {
  const WeightMatrix* w;
  float* y;
  int64_t first_token = 0;
  int64_t tokens = -1;
};

// Most products in one parallel section (the gate and up products of a layer's chosen experts).
constexpr size_t kMaxProductsPerSection = 32;

// Several matrices' products with rows of the same quantized batch (Q, K and V; an FFN's gate and
// up; several experts, each with its own tokens' rows) in one parallel section: one hand-off instead
// of one per matrix, and each thread's range runs on from one matrix into the next. Each result is
// the bits matmul gives alone.
void matmul(ThreadPool& pool, std::span<const MatrixProduct> products, const QuantizedBatch& x);

}  // namespace fi
