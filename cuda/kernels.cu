#include <cuda_fp16.h>

#include <algorithm>

#include "cuda/block_decode.h"
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fi::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kMatvecWarps = 4;  // rows per block: small blocks spread rows over every SM
constexpr int kElementwiseThreads = 256;
constexpr int kNormThreads = 256;
constexpr int kAttentionWarps = 4;
static_assert(kMatvecWarps * kWarp <= 1024 && kAttentionWarps * kWarp <= 1024, "block size");
static_assert(kNormThreads % kWarp == 0 && kNormThreads / kWarp <= kWarp, "one warp reduces the warp sums");
static_assert(kMaxHeadDim % kWarp == 0, "head slices per lane");

__device__ __forceinline__ float warp_sum(float value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

__device__ __forceinline__ float warp_max(float value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

constexpr int64_t kMaxBlocks = 1 << 20;


// Blocks for a grid-stride kernel: capped, the threads loop over the rest.
int blocks_for(int64_t count, int threads) {
  const int64_t blocks = (count + threads - 1) / threads;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(blocks, 1), kMaxBlocks));
}

// Blocks for a kernel whose every block owns its share (one warp per row or task): never capped.
int blocks_covering(int64_t count, int per_block) {
  const int64_t blocks = (count + per_block - 1) / per_block;
  if (blocks > kMaxBlocks)
    fail("internal: a GPU launch of %lld blocks (at most %lld)", static_cast<long long>(blocks),
         static_cast<long long>(kMaxBlocks));
  return static_cast<int>(std::max<int64_t>(blocks, 1));
}

// One warp per row; lanes take groups of 32 elements in turn, so a warp's loads cover a
// contiguous stretch of the row. x is read through the cache: every row reads the same x.
template <TensorType Type, int MaxTokens>
__global__ void __launch_bounds__(kMatvecWarps* kWarp)
    matvec_kernel(DeviceMatrix w, const float* __restrict__ x, int tokens, float* __restrict__ y, bool accumulate) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kMatvecWarps + threadIdx.x / kWarp;
  const int64_t rows = w.rows, cols = w.cols;
  if (row >= rows) return;
  const uint8_t* weights = w.row(row);
  const int64_t groups = (cols + kGroup - 1) / kGroup;
  const bool vector_x = cols % 4 == 0;
  float sums[MaxTokens];
#pragma unroll
  for (int t = 0; t < MaxTokens; ++t) sums[t] = 0.0f;
  float decoded[kGroup];
  for (int64_t g = lane; g < groups; g += kWarp) {
    const int valid = static_cast<int>(min(static_cast<int64_t>(kGroup), cols - g * kGroup));
    Format<Type>::decode(weights, g, valid, decoded);
#pragma unroll
    for (int t = 0; t < MaxTokens; ++t) {
      if (t >= tokens) break;
      const float* xs = x + t * cols + g * kGroup;
      float sum = 0.0f;
      // Explicit fused multiply-adds in a fixed order: left to nvcc, the contraction of a plain
      // expression could differ between the one-token and the batch instantiations, and a token's
      // logits must not depend on the batch it decodes in.
      if (vector_x && valid == kGroup) {
        float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int i = 0; i < kGroup / 4; ++i) {
          const float4 v = __ldg(reinterpret_cast<const float4*>(xs) + i);
          part[0] = fmaf(decoded[4 * i], v.x, part[0]);
          part[1] = fmaf(decoded[4 * i + 1], v.y, part[1]);
          part[2] = fmaf(decoded[4 * i + 2], v.z, part[2]);
          part[3] = fmaf(decoded[4 * i + 3], v.w, part[3]);
        }
        sum = (part[0] + part[1]) + (part[2] + part[3]);
      } else {
#pragma unroll
        for (int i = 0; i < kGroup; ++i)
          if (i < valid) sum = fmaf(decoded[i], __ldg(xs + i), sum);
      }
      sums[t] += sum;
    }
  }
#pragma unroll
  for (int t = 0; t < MaxTokens; ++t) {
    if (t >= tokens) break;
    const float total = warp_sum(sums[t]);
    if (lane == 0) y[t * rows + row] = accumulate ? y[t * rows + row] + total : total;
  }
}

struct MatvecLaunch {
  const DeviceMatrix& w;
  const float* x;
  int64_t tokens;
  float* y;
  bool accumulate;
  cudaStream_t stream;
  template <TensorType Type>
  void run() const {
    require_aligned(w, x, "matvec");
    const int blocks = blocks_covering(w.rows, kMatvecWarps);
    if (tokens == 1)
      FI_LAUNCH(blocks, kMatvecWarps * kWarp, stream, matvec_kernel<Type, 1>)(w, x, 1, y, accumulate);
    else
      FI_LAUNCH(blocks, kMatvecWarps * kWarp, stream, matvec_kernel<Type, kMaxMatvecTokens>)(
          w, x, static_cast<int>(tokens), y, accumulate);
    FI_CUDA_CHECK_LAUNCH("matvec_kernel");
  }
};

// Calls launcher.run<T>() with the type as a compile-time constant.
template <typename Launcher>
void with_type(TensorType type, const Launcher& launcher) {
  switch (type) {
#define FI_LAUNCH_TYPE(name, id, elements, bytes) \
  case TensorType::name: launcher.template run<TensorType::name>(); return;
    FI_TENSOR_TYPES(FI_LAUNCH_TYPE)
#undef FI_LAUNCH_TYPE
  }
  fail("internal: no GPU kernel for tensor type %u", static_cast<unsigned>(type));
}

// One thread per (row, group): rows of w decoded to floats, then stored by `store`.
template <TensorType Type, typename Store>
__global__ void decode_rows_kernel(DeviceMatrix w, const int32_t* __restrict__ row_ids, int64_t first_row, int64_t rows,
                                   Store store) {
  const int64_t cols = w.cols;
  const int64_t groups = (cols + kGroup - 1) / kGroup;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < rows * groups;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = index / groups, g = index % groups;
    const int64_t source_row = row_ids ? row_ids[r] : first_row + r;
    const int valid = static_cast<int>(min(static_cast<int64_t>(kGroup), cols - g * kGroup));
    float decoded[kGroup];
    Format<Type>::decode(w.row(source_row), g, valid, decoded);
#pragma unroll
    for (int i = 0; i < kGroup; ++i)
      if (i < valid) store(r * cols + g * kGroup + i, decoded[i]);
  }
}

struct StoreFloat {
  float* out;
  __device__ void operator()(int64_t index, float value) const { out[index] = value; }
};
struct StoreHalf {
  __half* out;
  __device__ void operator()(int64_t index, float value) const { out[index] = __float2half_rn(value); }
};

template <typename Store>
struct DecodeRowsLaunch {
  const DeviceMatrix& w;
  const int32_t* row_ids;
  int64_t first_row;
  int64_t rows;
  Store store;
  cudaStream_t stream;
  template <TensorType Type>
  void run() const {
    require_aligned(w, nullptr, "decode_rows");
    const int64_t work = rows * ((w.cols + kGroup - 1) / kGroup);
    FI_LAUNCH(blocks_for(work, kElementwiseThreads), kElementwiseThreads, stream, decode_rows_kernel<Type, Store>)(
        w, row_ids, first_row, rows, store);
    FI_CUDA_CHECK_LAUNCH("decode_rows_kernel");
  }
};

template <typename Store>
void launch_decode_rows(const DeviceMatrix& w, const int32_t* row_ids, int64_t first_row, int64_t rows, Store store,
                        cudaStream_t stream) {
  with_type(w.type, DecodeRowsLaunch<Store>{w, row_ids, first_row, rows, store, stream});
}

__global__ void floats_to_half_kernel(const float* __restrict__ x, int64_t count, __half* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    // NaN stays NaN (both comparisons false).
    const float value = x[i];
    out[i] = __float2half_rn(value > kHalfMax ? kHalfMax : value < -kHalfMax ? -kHalfMax : value);
  }
}

// One block per token; the sum of squares in double like the CPU path. x may be out (per-head
// norms run in place), so neither is __restrict__.
__global__ void __launch_bounds__(kNormThreads)
    rms_norm_kernel(const float* x, const float* __restrict__ weight, float* out, int64_t dim, double eps) {
  const float* row = x + blockIdx.x * dim;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < dim; i += kNormThreads) sum += static_cast<double>(row[i]) * row[i];
  for (int offset = kWarp / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  __shared__ double warp_sums[kNormThreads / kWarp];
  __shared__ float scale;
  if (threadIdx.x % kWarp == 0) warp_sums[threadIdx.x / kWarp] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int i = 0; i < kNormThreads / kWarp; ++i) total += warp_sums[i];
    scale = static_cast<float>(1.0 / sqrt(total / static_cast<double>(dim) + eps));
  }
  __syncthreads();
  float* destination = out + blockIdx.x * dim;
  for (int64_t i = threadIdx.x; i < dim; i += kNormThreads) destination[i] = row[i] * scale * weight[i];
}

// Index space: per token, the query heads' pairs, then the key heads' pairs, then the value heads'
// pairs (copied, not rotated).
__global__ void rope_and_store_kernel(float* __restrict__ q, float* __restrict__ k, const float* __restrict__ v,
                                      int64_t tokens, const TokenPlace* __restrict__ places,
                                      const double* __restrict__ inverse_frequencies,
                                      AttentionShape shape, __half* __restrict__ key_cache,
                                      __half* __restrict__ value_cache) {
  const int64_t pairs = shape.head_dim / 2, rotated_pairs = shape.rope_dim / 2;
  const int64_t heads = shape.n_heads + 2 * shape.n_kv_heads;
  const int64_t kv_dim = shape.n_kv_heads * shape.head_dim, dim = shape.n_heads * shape.head_dim;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < tokens * heads * pairs;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = index / (heads * pairs), head = index / pairs % heads, i = index % pairs;
    const TokenPlace place = places[t];
    const int64_t cache_row = (static_cast<int64_t>(place.first_row) + place.position) * kv_dim;
    if (head >= shape.n_heads + shape.n_kv_heads) {
      const int64_t offset = (head - shape.n_heads - shape.n_kv_heads) * shape.head_dim + 2 * i;
      value_cache[cache_row + offset] = __float2half_rn(v[t * kv_dim + offset]);
      value_cache[cache_row + offset + 1] = __float2half_rn(v[t * kv_dim + offset + 1]);
      continue;
    }
    const bool is_query = head < shape.n_heads;
    float* head_values = is_query ? q + t * dim + head * shape.head_dim : k + t * kv_dim + (head - shape.n_heads) * shape.head_dim;
    // Pair i: elements (i, i + rotated_pairs) for NeoX below rope_dim, else (2i, 2i+1).
    const bool neox = shape.neox_rope && i < rotated_pairs;
    const int64_t first = neox ? i : 2 * i, second = neox ? i + rotated_pairs : 2 * i + 1;
    if (i < rotated_pairs) {
      double sine, cosine;
      sincos(static_cast<double>(place.position) * inverse_frequencies[i], &sine, &cosine);
      const float c = static_cast<float>(cosine), s = static_cast<float>(sine);
      const float a = head_values[first], b = head_values[second];
      head_values[first] = a * c - b * s;
      head_values[second] = a * s + b * c;
    }
    if (!is_query) {
      const int64_t offset = (head - shape.n_heads) * shape.head_dim;
      key_cache[cache_row + offset + first] = __float2half_rn(head_values[first]);
      key_cache[cache_row + offset + second] = __float2half_rn(head_values[second]);
    }
  }
}

// One warp per (token, query head), positions in chunks of 32 (one per lane) with an online
// softmax; each lane accumulates its slice of head dimensions over the chunk's positions.
__global__ void __launch_bounds__(kAttentionWarps* kWarp)
    attention_kernel(const float* __restrict__ q, const __half* __restrict__ key_cache,
                     const __half* __restrict__ value_cache, int64_t tokens, const TokenPlace* __restrict__ places,
                     AttentionShape shape, float* __restrict__ out) {
  __shared__ float query[kAttentionWarps][kMaxHeadDim];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t task = static_cast<int64_t>(blockIdx.x) * kAttentionWarps + warp;
  if (task >= tokens * shape.n_heads) return;
  const int64_t t = task / shape.n_heads, h = task % shape.n_heads;
  const int64_t head_dim = shape.head_dim, dim = shape.n_heads * head_dim, kv_dim = shape.n_kv_heads * head_dim;
  const int64_t kv_offset = h / (shape.n_heads / shape.n_kv_heads) * head_dim;
  const TokenPlace place = places[t];
  const int64_t visible = static_cast<int64_t>(place.position) + 1;
  key_cache += static_cast<int64_t>(place.first_row) * kv_dim;
  value_cache += static_cast<int64_t>(place.first_row) * kv_dim;
  const float scale = shape.scale;
  for (int64_t i = lane; i < head_dim; i += kWarp) query[warp][i] = q[t * dim + h * head_dim + i];
  __syncwarp();

  constexpr int kSlices = kMaxHeadDim / kWarp;
  float accumulated[kSlices];
#pragma unroll
  for (int s = 0; s < kSlices; ++s) accumulated[s] = 0.0f;
  float running_max = -INFINITY, running_sum = 0.0f;
  for (int64_t base = 0; base < visible; base += kWarp) {
    const int64_t p = base + lane;
    float score = -INFINITY;
    if (p < visible) {
      const __half2* key = reinterpret_cast<const __half2*>(key_cache + p * kv_dim + kv_offset);
      float dot = 0.0f;
      for (int64_t i = 0; i < head_dim / 2; ++i) {
        const float2 k2 = __half22float2(key[i]);
        dot += k2.x * query[warp][2 * i] + k2.y * query[warp][2 * i + 1];
      }
      score = dot * scale;
    }
    const float new_max = fmaxf(running_max, warp_max(score));
    const float correction = expf(running_max - new_max);  // 0 on the first chunk
    const float weight = p < visible ? expf(score - new_max) : 0.0f;
    running_sum = running_sum * correction + warp_sum(weight);
    running_max = new_max;
#pragma unroll
    for (int s = 0; s < kSlices; ++s) accumulated[s] *= correction;
    const int count = static_cast<int>(min(static_cast<int64_t>(kWarp), visible - base));
    for (int j = 0; j < count; ++j) {
      const float wj = __shfl_sync(0xffffffffu, weight, j);
      const __half* value = value_cache + (base + j) * kv_dim + kv_offset;
#pragma unroll
      for (int s = 0; s < kSlices; ++s) {
        const int64_t d = lane + s * kWarp;
        if (d < head_dim) accumulated[s] += wj * __half2float(value[d]);
      }
    }
  }
  const float inverse_sum = 1.0f / running_sum;
#pragma unroll
  for (int s = 0; s < kSlices; ++s) {
    const int64_t d = lane + s * kWarp;
    if (d < head_dim) out[t * dim + h * head_dim + d] = accumulated[s] * inverse_sum;
  }
}

__global__ void swiglu_kernel(float* __restrict__ gate, const float* __restrict__ up, int64_t count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void add_bias_kernel(float* __restrict__ x, const float* __restrict__ bias, int64_t count, int64_t width) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] += bias[i % width];
}

__global__ void gather_rows_kernel(const float* __restrict__ x, const int32_t* __restrict__ rows, int64_t count,
                                   int64_t width, float* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count * width;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = x[rows[i / width] * width + i % width];
}

__global__ void scatter_rows_kernel(const float* __restrict__ x, const int32_t* __restrict__ rows, int64_t count,
                                    int64_t width, float* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count * width;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[rows[i / width] * width + i % width] = x[i];
}

__global__ void add_weighted_rows_kernel(const float* __restrict__ rows, const float* __restrict__ weights, int64_t tokens,
                                         int64_t k, int64_t width, float* __restrict__ x) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < tokens * width;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / width, e = i % width;
    // Rounded after each multiply and each add: no fused multiply-add, as the CPU sums.
    float sum = multiply_then_add(rows[(t * k) * width + e], weights[t * k], 0.0f);
    for (int64_t j = 1; j < k; ++j) sum = multiply_then_add(rows[(t * k + j) * width + e], weights[t * k + j], sum);
    x[i] += sum;
  }
}

// One thread per plain byte: group g of 8 rows, row r of it, block b of the row, byte j of the block
// comes from x8 block b of the group at offsets[r * block_bytes + j].
__global__ void deinterleave_rows_kernel(const uint8_t* __restrict__ interleaved, const uint16_t* __restrict__ offsets,
                                         int64_t bytes, int64_t row_bytes, int64_t block_bytes,
                                         uint8_t* __restrict__ plain) {
  const int64_t group_bytes = 8 * row_bytes;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < bytes;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t group = i / group_bytes, in_group = i % group_bytes;
    const int64_t row = in_group / row_bytes, in_row = in_group % row_bytes;
    const int64_t block = in_row / block_bytes, in_block = in_row % block_bytes;
    plain[i] = interleaved[group * group_bytes + block * 8 * block_bytes + offsets[row * block_bytes + in_block]];
  }
}

}  // namespace

void deinterleave_rows(const uint8_t* interleaved, const uint16_t* offsets, int64_t rows, int64_t row_bytes,
                       int64_t block_bytes, uint8_t* plain, const Stream& stream) {
  if (rows % 8 != 0 || block_bytes <= 0 || row_bytes % block_bytes != 0)
    fail("internal: %lld rows of %lld bytes cannot be deinterleaved in blocks of %lld", static_cast<long long>(rows),
         static_cast<long long>(row_bytes), static_cast<long long>(block_bytes));
  if (rows == 0) return;
  FI_LAUNCH(blocks_for(rows * row_bytes, kElementwiseThreads), kElementwiseThreads, native(stream.handle()),
            deinterleave_rows_kernel)(interleaved, offsets, rows * row_bytes, row_bytes, block_bytes, plain);
  FI_CUDA_CHECK_LAUNCH("deinterleave_rows_kernel");
}

void gather_rows(const float* x, const int32_t* rows, int64_t count, int64_t width, float* out, const Stream& stream) {
  if (count == 0) return;
  FI_LAUNCH(blocks_for(count * width, kElementwiseThreads), kElementwiseThreads, native(stream.handle()), gather_rows_kernel)(
      x, rows, count, width, out);
  FI_CUDA_CHECK_LAUNCH("gather_rows_kernel");
}

void scatter_rows(const float* x, const int32_t* rows, int64_t count, int64_t width, float* out, const Stream& stream) {
  if (count == 0) return;
  FI_LAUNCH(blocks_for(count * width, kElementwiseThreads), kElementwiseThreads, native(stream.handle()),
            scatter_rows_kernel)(x, rows, count, width, out);
  FI_CUDA_CHECK_LAUNCH("scatter_rows_kernel");
}

void add_weighted_rows(const float* rows, const float* weights, int64_t tokens, int64_t k, int64_t width, float* x,
                       const Stream& stream) {
  if (tokens == 0) return;
  FI_LAUNCH(blocks_for(tokens * width, kElementwiseThreads), kElementwiseThreads, native(stream.handle()),
            add_weighted_rows_kernel)(rows, weights, tokens, k, width, x);
  FI_CUDA_CHECK_LAUNCH("add_weighted_rows_kernel");
}

void matvec(const DeviceMatrix& w, const float* x, int64_t tokens, float* y, const Stream& stream, bool accumulate) {
  if (tokens < 1 || tokens > kMaxMatvecTokens) fail("internal: matvec of %lld tokens", static_cast<long long>(tokens));
  with_type(w.type, MatvecLaunch{w, x, tokens, y, accumulate, native(stream.handle())});
}

void dequantize_to_half(const DeviceMatrix& w, int64_t first_row, int64_t rows, uint16_t* out, const Stream& stream) {
  launch_decode_rows(w, nullptr, first_row, rows, StoreHalf{reinterpret_cast<__half*>(out)}, native(stream.handle()));
}

void floats_to_half(const float* x, int64_t count, uint16_t* out, const Stream& stream) {
  FI_LAUNCH(blocks_for(count, kElementwiseThreads), kElementwiseThreads, native(stream.handle()), floats_to_half_kernel)(
      x, count, reinterpret_cast<__half*>(out));
  FI_CUDA_CHECK_LAUNCH("floats_to_half_kernel");
}

void embed(const DeviceMatrix& table, const int32_t* tokens, int64_t count, float* out, const Stream& stream) {
  launch_decode_rows(table, tokens, 0, count, StoreFloat{out}, native(stream.handle()));
}

void rms_norm(const float* x, const float* weight, float* out, int64_t tokens, int64_t dim, double eps,
              const Stream& stream) {
  if (tokens == 0) return;  // a grid of no blocks is a launch error
  FI_LAUNCH(static_cast<unsigned>(tokens), kNormThreads, native(stream.handle()), rms_norm_kernel)(x, weight, out, dim, eps);
  FI_CUDA_CHECK_LAUNCH("rms_norm_kernel");
}

void rope_and_store_kv(float* q, float* k, const float* v, int64_t tokens, const TokenPlace* places,
                       const double* inverse_frequencies, const AttentionShape& shape, uint16_t* key_cache,
                       uint16_t* value_cache, const Stream& stream) {
  const int64_t work = tokens * (shape.n_heads + 2 * shape.n_kv_heads) * (shape.head_dim / 2);
  FI_LAUNCH(blocks_for(work, kElementwiseThreads), kElementwiseThreads, native(stream.handle()), rope_and_store_kernel)(
      q, k, v, tokens, places, inverse_frequencies, shape, reinterpret_cast<__half*>(key_cache),
      reinterpret_cast<__half*>(value_cache));
  FI_CUDA_CHECK_LAUNCH("rope_and_store_kernel");
}

void attention(const float* q, const uint16_t* key_cache, const uint16_t* value_cache, int64_t tokens,
               const TokenPlace* places, const AttentionShape& shape, float* out, const Stream& stream) {
  if (shape.head_dim > kMaxHeadDim || shape.head_dim % 2 != 0)
    fail("the GPU attention kernel takes even head dimensions up to %lld, not %lld", static_cast<long long>(kMaxHeadDim),
         static_cast<long long>(shape.head_dim));
  const int blocks = blocks_covering(tokens * shape.n_heads, kAttentionWarps);
  FI_LAUNCH(blocks, kAttentionWarps * kWarp, native(stream.handle()), attention_kernel)(
      q, reinterpret_cast<const __half*>(key_cache), reinterpret_cast<const __half*>(value_cache), tokens, places,
      shape, out);
  FI_CUDA_CHECK_LAUNCH("attention_kernel");
}

void add_bias(float* x, const float* bias, int64_t tokens, int64_t width, const Stream& stream) {
  const int64_t count = tokens * width;
  FI_LAUNCH(blocks_for(count, kElementwiseThreads), kElementwiseThreads, native(stream.handle()), add_bias_kernel)(
      x, bias, count, width);
  FI_CUDA_CHECK_LAUNCH("add_bias_kernel");
}

void swiglu(float* gate, const float* up, int64_t count, const Stream& stream) {
  FI_LAUNCH(blocks_for(count, kElementwiseThreads), kElementwiseThreads, native(stream.handle()), swiglu_kernel)(gate, up, count);
  FI_CUDA_CHECK_LAUNCH("swiglu_kernel");
}

}  // namespace fi::cuda
