#include <algorithm>
#include <vector>

#include "cuda/kernels.h"

namespace fi::cuda {

double measure_matvec_GBps(TensorType type, uint64_t bytes) {
  constexpr int64_t kCols = 4096;  // a 7B model's hidden size
  const uint64_t matrix_row_bytes = row_bytes(type, kCols);
  const auto rows = static_cast<int64_t>(std::max<uint64_t>(bytes / matrix_row_bytes, 1));
  const uint64_t matrix_bytes = static_cast<uint64_t>(rows) * matrix_row_bytes;
  DeviceArena arena(matrix_bytes + static_cast<uint64_t>(kCols + rows) * sizeof(float) + 1024);
  auto* weights = static_cast<uint8_t*>(arena.allocate(matrix_bytes, "matrix"));
  auto* x = arena.allocate_array<float>(kCols, "input");
  auto* y = arena.allocate_array<float>(static_cast<uint64_t>(rows), "output");
  Stream stream;
  // Zero blocks decode like any others; the pass is about moving the bytes.
  fill_zero_async(weights, matrix_bytes, stream);
  fill_zero_async(x, kCols * sizeof(float), stream);
  const DeviceMatrix matrix{type, rows, kCols, matrix_row_bytes, weights};
  matvec(matrix, x, 1, y, stream);  // warm-up
  Event start(true), stop(true);
  std::vector<double> rates;
  for (int pass = 0; pass < 5; ++pass) {
    start.record(stream);
    matvec(matrix, x, 1, y, stream);
    stop.record(stream);
    stop.synchronize();
    rates.push_back(static_cast<double>(matrix_bytes) / (stop.milliseconds_since(start) * 1e-3) / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[2];
}

}  // namespace fi::cuda
