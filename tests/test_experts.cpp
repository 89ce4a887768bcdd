// Mixture-of-experts kernels against plain scalar references on random data: llama.cpp's routing
// (softmax, top-k, renormalised weights, ties to the lower index) and products with one expert's
// slice of a stacked matrix, wherever its rows lie (resident, streamed, split, interleaved).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "host/kernels/matmul.h"
#include "host/kernels/quant.h"
#include "host/kernels/repack.h"
#include "host/kernels/routing.h"
#include "io/error.h"

namespace fi {
namespace {

// Double-precision routing, selection by repeated arg-max (the first index wins a tie).
void reference_route(const std::vector<float>& logits, int64_t k, std::vector<int32_t>& experts, std::vector<double>& weights) {
  const double max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p;
  double total = 0;
  for (float l : logits) total += p.emplace_back(std::exp(static_cast<double>(l) - max_logit));
  for (double& value : p) value /= total;
  std::vector<bool> taken(p.size(), false);
  experts.clear();
  weights.clear();
  double chosen = 0;
  for (int64_t j = 0; j < k; ++j) {
    size_t best = p.size();
    for (size_t e = 0; e < p.size(); ++e)
      if (!taken[e] && (best == p.size() || p[e] > p[best])) best = e;
    taken[best] = true;
    experts.push_back(static_cast<int32_t>(best));
    chosen += p[best];
  }
  for (int32_t e : experts) weights.push_back(p[static_cast<size_t>(e)] / chosen);
}

TEST(Routing, TopKSoftmaxMatchesTheReference) {
  std::mt19937 rng(7);
  for (int64_t n : {2, 4, 8, 60, 128, 256}) {
    for (int64_t k : {int64_t{1}, int64_t{2}, std::min<int64_t>(8, n), n}) {
      for (int trial = 0; trial < 20; ++trial) {
        // Distinct logits a thousandth apart at least: float and double agree on the order.
        std::vector<float> logits(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) logits[static_cast<size_t>(i)] = 0.001f * static_cast<float>(i) * 7.0f;
        std::shuffle(logits.begin(), logits.end(), rng);
        const float offset = std::normal_distribution<float>(0.0f, 3.0f)(rng);
        for (float& l : logits) l += offset;
        std::vector<int32_t> experts(static_cast<size_t>(k)), expected;
        std::vector<float> weights(static_cast<size_t>(k));
        std::vector<double> expected_weights;
        route_top_k(logits.data(), n, k, experts.data(), weights.data());
        reference_route(logits, k, expected, expected_weights);
        EXPECT_EQ(experts, expected) << "n " << n << " k " << k;
        double sum = 0;
        for (int64_t j = 0; j < k; ++j) {
          EXPECT_NEAR(weights[static_cast<size_t>(j)], expected_weights[static_cast<size_t>(j)], 1e-6);
          sum += weights[static_cast<size_t>(j)];
        }
        EXPECT_NEAR(sum, 1.0, 1e-6);
      }
    }
  }
}

TEST(Routing, RandomLogitsMatchTheReference) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> logits(128);
    for (float& l : logits) l = normal(rng);
    std::vector<int32_t> experts(8), expected;
    std::vector<float> weights(8);
    std::vector<double> expected_weights;
    route_top_k(logits.data(), 128, 8, experts.data(), weights.data());
    reference_route(logits, 8, expected, expected_weights);
    EXPECT_EQ(experts, expected);
    for (size_t j = 0; j < 8; ++j) EXPECT_NEAR(weights[j], expected_weights[j], 1e-6);
  }
}

TEST(Routing, TiesGoToTheLowerIndexAndNaNNeverWins) {
  const std::vector<float> tied = {1.0f, 3.0f, 3.0f, 0.0f, 3.0f};
  int32_t experts[3];
  float weights[3];
  route_top_k(tied.data(), 5, 2, experts, weights);
  EXPECT_EQ(experts[0], 1);
  EXPECT_EQ(experts[1], 2);
  EXPECT_FLOAT_EQ(weights[0], 0.5f);
  EXPECT_FLOAT_EQ(weights[1], 0.5f);
  route_top_k(tied.data(), 5, 3, experts, weights);
  EXPECT_EQ(experts[2], 4);
  const std::vector<float> broken = {NAN, 2.0f, NAN, 1.0f};
  route_top_k(broken.data(), 4, 2, experts, weights);
  for (int j = 0; j < 2; ++j) EXPECT_TRUE(experts[j] >= 0 && experts[j] < 4);
}

// A stacked matrix of `experts` slices of `slice_rows` rows, stored resident up to `split_row` and
// the rest elsewhere (as a streamed tail), interleaved when asked.
struct Stacked {
  std::vector<uint8_t> head, tail;
  WeightMatrix matrix;
};

Stacked stacked(TensorType type, int64_t cols, int64_t rows, int64_t split_row, bool interleave, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const uint64_t bytes_per_row = row_bytes(type, static_cast<uint64_t>(cols));
  std::vector<uint8_t> all(bytes_per_row * static_cast<uint64_t>(rows));
  std::vector<float> values(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : values) v = normal(rng);
    quantize_row(type, values.data(), all.data() + static_cast<uint64_t>(r) * bytes_per_row, cols);
  }
  Stacked s;
  s.head.assign(all.begin(), all.begin() + static_cast<int64_t>(bytes_per_row) * split_row);
  s.tail.assign(all.begin() + static_cast<int64_t>(bytes_per_row) * split_row, all.end());
  s.matrix = {type, cols, rows, bytes_per_row, s.head.data()};
  if (split_row < rows) {
    s.matrix.tail = s.tail.data();
    s.matrix.split_row = split_row;
  }
  if (split_row == 0) {  // wholly streamed: the data is the tail
    s.matrix.data = s.tail.data();
    s.matrix.tail = nullptr;
    s.matrix.split_row = 0;
  }
  if (interleave) {
    ThreadPool pool(2);
    if (!s.head.empty()) interleave_rows(pool, type, cols, split_row, s.head.data());
    if (!s.tail.empty()) interleave_rows(pool, type, cols, rows - split_row, s.tail.data());
    s.matrix.interleaved = true;
  }
  return s;
}

struct SliceCase {
  TensorType type;
  bool interleave;
};

class ExpertSlice : public ::testing::TestWithParam<SliceCase> {};

// Each expert's product with its slice equals the scalar reference on those rows of the file's
// layout, whatever part of the stacked matrix holds them.
TEST_P(ExpertSlice, ProductsMatchTheReferenceOnEverySplit) {
  const auto [type, interleave] = GetParam();
  if (interleave && !interleaves(type)) GTEST_SKIP() << type_name(type) << " is not interleaved with these kernels";
  ThreadPool pool(2);
  const int64_t cols = 256, slice_rows = 24, experts = 4, rows = slice_rows * experts, tokens = 3;
  const Stacked plain = stacked(type, cols, rows, rows, false, 5);
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(cols * tokens));
  for (float& v : x) v = normal(rng);
  QuantizedBatch quantized;
  quantize_batch(pool, type, x.data(), cols, tokens, quantized);
  for (int64_t split : {int64_t{0}, int64_t{16}, slice_rows, int64_t{40}, rows}) {
    const Stacked s = stacked(type, cols, rows, split, interleave, 5);
    for (int64_t e = 0; e < experts; ++e) {
      const WeightMatrix slice = row_slice(s.matrix, e * slice_rows, slice_rows);
      ASSERT_EQ(slice.rows, slice_rows);
      std::vector<float> y(static_cast<size_t>(slice_rows * tokens));
      matmul(pool, slice, quantized, y.data());
      for (int64_t t = 0; t < tokens; ++t) {
        std::vector<uint8_t> activations(activation_row_bytes(type, cols));
        reference::quantize_activations(type, &x[static_cast<size_t>(t * cols)], activations.data(), cols);
        for (int64_t r = 0; r < slice_rows; ++r) {
          const float expected = reference::vec_dot(type, cols, plain.matrix.row(e * slice_rows + r), activations.data());
          EXPECT_NEAR(y[static_cast<size_t>(t * slice_rows + r)], expected, 1e-4 * (1.0 + std::fabs(expected)))
              << type_name(type) << " split " << split << " expert " << e << " row " << r << " token " << t;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, ExpertSlice,
                         ::testing::Values(SliceCase{TensorType::F32, false}, SliceCase{TensorType::F16, false},
                                           SliceCase{TensorType::Q8_0, false}, SliceCase{TensorType::Q4_0, false},
                                           SliceCase{TensorType::Q4_0, true}, SliceCase{TensorType::Q4_K, true},
                                           SliceCase{TensorType::Q6_K, true}),
                         [](const auto& info) {
                           return std::string(type_name(info.param.type)) + (info.param.interleave ? "_interleaved" : "");
                         });

TEST(ExpertSlice, AnInterleavedMatrixIsSlicedAtWholeGroupsOnly) {
  WeightMatrix w{TensorType::Q4_0, 256, 32, row_bytes(TensorType::Q4_0, 256), nullptr};
  w.interleaved = true;
  EXPECT_THROW(row_slice(w, 4, 8), Error);
  EXPECT_THROW(row_slice(w, 24, 16), Error);
  EXPECT_NO_THROW(row_slice(w, 8, 16));
}

}  // namespace
}  // namespace fi
