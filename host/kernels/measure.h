#pragma once
// Measurements of this machine's host side for `flexinfer probe`: memory read bandwidth and the
// rate at which the CPU kernels get through weight bytes in a matrix-vector product.
#include <cstdint>

#include "host/kernels/thread_pool.h"
#include "io/tensor_type.h"

namespace fi {

// GB/s reading `bytes` (well beyond the last-level cache) with every thread of the pool; best of
// `rounds`.
double measure_memory_read_GBps(ThreadPool& pool, uint64_t bytes, int rounds);
// GB/s of weight bytes through matmul for one token, on a `bytes`-sized matrix of `type` with rows
// of 4096 (prepared as the engine prepares it); best of `rounds`.
double measure_matvec_GBps(ThreadPool& pool, TensorType type, uint64_t bytes, int rounds);

}  // namespace fi
