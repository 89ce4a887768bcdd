#pragma once
// The llama kernels on the device. Pointers are device memory; activations are row-major
// [token][element] floats; the KV cache is half precision [position][kv_dim] per layer and kind.
// Each launcher checks its launch; faults inside a kernel surface at the next synchronisation.
#include <cstdint>

#include "cuda/block_decode.h"
#include "cuda/runtime.h"
#include "io/error.h"
#include "io/tensor_type.h"

namespace fi::cuda {

// A weight matrix on the device in its file layout: `rows` rows of `cols` elements of `type`. A
// matrix split between its resident rows and a staging slot keeps rows [0, split_row) at `data`
// and the rest at `tail`.
struct DeviceMatrix {
  TensorType type = TensorType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  uint64_t row_bytes = 0;
  const uint8_t* data = nullptr;
  const uint8_t* tail = nullptr;
  int64_t split_row = 0;  // meaningful only with a tail

  FI_HD const uint8_t* row(int64_t r) const {
    if (tail && r >= split_row) return tail + static_cast<uint64_t>(r - split_row) * row_bytes;
    return data + static_cast<uint64_t>(r) * row_bytes;
  }
};

// The alignment matvec and the row decoders need, checked on the host before a launch (a
// misaligned load faults on the GPU alone): weights and tail at 16 bytes (Q4_K's and Q5_K's 16-byte
// loads), x at 16 when rows are a multiple of 4 floats long (read as float4), else at 4.
inline void require_aligned(const DeviceMatrix& w, const float* x, const char* kernel) {
  auto off = [](const void* p, uintptr_t alignment) { return reinterpret_cast<uintptr_t>(p) % alignment != 0; };
  if (off(w.data, 16) || (w.tail && off(w.tail, 16)) || (x && off(x, w.cols % 4 == 0 ? 16 : 4)))
    fail("internal: %s on weights or input off their alignment (weights %p, tail %p, input %p)", kernel,
         static_cast<const void*>(w.data), static_cast<const void*>(w.tail), static_cast<const void*>(x));
}

// y[t][r] = sum_k w[r][k] x[t][k] for up to kMaxMatvecTokens tokens: a memory-bound pass over w
// (one warp per row, decoding in registers), for decode and short batches. With accumulate,
// y[t][r] += the sum (the residual add, without a kernel of its own).
constexpr int kMaxMatvecTokens = 8;
void matvec(const DeviceMatrix& w, const float* x, int64_t tokens, float* y, const Stream& stream,
            bool accumulate = false);

// Rows [first_row, first_row + rows) of w as half precision, row-major, for cuBLAS.
void dequantize_to_half(const DeviceMatrix& w, int64_t first_row, int64_t rows, uint16_t* out, const Stream& stream);
// Inputs to half precision for cuBLAS, saturated at half's largest finite value: a model's outlier
// activation past it becomes kHalfMax, not an infinity that turns the product into NaN.
inline constexpr float kHalfMax = 65504.0f;
void floats_to_half(const float* x, int64_t count, uint16_t* out, const Stream& stream);

// out[t] = row tokens[t] of the table, as floats; tokens are device memory, already range-checked.
void embed(const DeviceMatrix& table, const int32_t* tokens, int64_t count, float* out, const Stream& stream);

void rms_norm(const float* x, const float* weight, float* out, int64_t tokens, int64_t dim, double eps,
              const Stream& stream);

struct AttentionShape {
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t rope_dim = 0;
  // RoPE pairs element i with i + rope_dim/2 (GPT-NeoX, Qwen) instead of 2i with 2i+1 (llama).
  bool neox_rope = false;
  float scale = 0.0f;  // of the attention scores, usually 1/sqrt(head_dim)
};
constexpr int64_t kMaxHeadDim = 256;

// Where a batch token goes: its position in its sequence, and the cache row holding that
// sequence's position 0. Its key and value are stored at row first_row + position; it attends to
// rows first_row .. first_row + position.
struct TokenPlace {
  int32_t position = 0;
  int32_t first_row = 0;
};
static_assert(sizeof(TokenPlace) == 8, "two 32-bit integers per token");

// RoPE on the pairs of each head (shape.neox_rope says which) of q [tokens][n_heads * head_dim] and
// k [tokens][kv_dim] at each token's position (places: device memory; angles in double from the
// per-pair inverse frequencies, device memory); elements past rope_dim are not rotated. Then k and
// v are stored as halves at each token's row of the layer's caches.
void rope_and_store_kv(float* q, float* k, const float* v, int64_t tokens, const TokenPlace* places,
                       const double* inverse_frequencies, const AttentionShape& shape, uint16_t* key_cache,
                       uint16_t* value_cache, const Stream& stream);

// Causal attention of each token's query heads over its sequence's rows up to its own (places as
// above; grouped-query: query head h reads KV head h / (n_heads / n_kv_heads)), scores scaled by
// shape.scale; out like q.
void attention(const float* q, const uint16_t* key_cache, const uint16_t* value_cache, int64_t tokens,
               const TokenPlace* places, const AttentionShape& shape, float* out, const Stream& stream);

void swiglu(float* gate, const float* up, int64_t count, const Stream& stream);  // gate = silu(gate) * up

// x[t][i] += bias[i] for t < tokens, i < width.
void add_bias(float* x, const float* bias, int64_t tokens, int64_t width, const Stream& stream);

// Mixture of experts, on rows of `width` floats: out[i] = x[rows[i]] for i < count (rows: device
// memory), the tokens one expert computes, side by side.
void gather_rows(const float* x, const int32_t* rows, int64_t count, int64_t width, float* out, const Stream& stream);
// out[rows[i]] = x[i] for i < count: an expert's results back to its choices' rows.
void scatter_rows(const float* x, const int32_t* rows, int64_t count, int64_t width, float* out, const Stream& stream);
// x[t] += sum over j < k, in order, of weights[t * k + j] * rows[t * k + j], each product and each
// sum rounded on its own, as the CPU adds a token's chosen experts (the same rows give the same bits).
void add_weighted_rows(const float* rows, const float* weights, int64_t tokens, int64_t k, int64_t width, float* x,
                       const Stream& stream);

// Rows the CPU interleaved (host/kernels/repack.h) back in their type's plain blocks, as the other
// kernels read them: `rows` rows (a multiple of 8) of `row_bytes` in blocks of `block_bytes`;
// offsets (device memory, 8 * block_bytes entries) is the type's interleaved_offsets.
void deinterleave_rows(const uint8_t* interleaved, const uint16_t* offsets, int64_t rows, int64_t row_bytes,
                       int64_t block_bytes, uint8_t* plain, const Stream& stream);

// Weight bytes per second through matvec for one token over a matrix of about `bytes` of `type`
// on the current device, the median of 5 timed passes (for the probe's profile).
double measure_matvec_GBps(TensorType type, uint64_t bytes);

}  // namespace fi::cuda
