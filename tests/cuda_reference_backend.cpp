// A host-memory stand-in for the GPU, so the GPU engine's own code (host/gpu/gpu_compute.cpp: memory
// plan, uploads, layouts, the order of kernels, the prefill/decode split, streams and events) runs
// end to end on any machine. cuda/runtime.cu and cuda/device_info.cu are compiled as they are
// against the fake CUDA runtime below (one "device", host memory, streams run lazily); the kernel
// and cuBLAS entry points are plain scalar implementations of the contracts in cuda/kernels.h and
// cuda/blas.h, queued on their streams like launches.
// That the CUDA kernels keep those contracts is test_kernels_emulated's and test_gpu's job.
#include "cuda_emulation.h"

#include "cuda/device_info.cu"
#include "cuda/runtime.cu"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

#include "cuda/blas.h"
#include "cuda/block_decode.h"
#include "cuda/kernels.h"
#include "host/kernels/fp16.h"
#include "cuda_reference_device.h"

// Streams run lazily and as late as CUDA allows: work queued on a stream runs only when the host
// or another stream waits for it (cudaStreamSynchronize, cudaEventSynchronize, a wait on a recorded
// event, cudaFree). Work that the engine forgot to order after an upload or a copy to the host, or
// a pinned source the host reused too early, therefore gives wrong results here, instead of usually
// winning the race as it might on a GPU. With FLEXINFER_REFERENCE_EAGER_COPIES set, streams that
// never ran a kernel (the upload stream) run as early as they may instead, so an upload into a slot
// whose last reader has not run yet shows too. Copies from pageable host memory take the source
// when called and copies to it complete before returning, as CUDA documents; pinned memory is
// read and written only when the copy runs.
namespace {

struct FakeStream {
  std::deque<std::function<void()>> queued;
  bool ran_kernels = false;
  uint64_t enqueued = 0;  // operations ever queued
  uint64_t executed = 0;
};

struct FakeEvent {
  FakeStream* stream = nullptr;
  uint64_t position = 0;  // the stream's operations before the record
};

std::set<FakeStream*>& live_streams() {
  static std::set<FakeStream*> streams;
  return streams;
}

std::map<uintptr_t, size_t>& pinned_ranges() {
  static std::map<uintptr_t, size_t> ranges;
  return ranges;
}

bool is_pinned(const void* pointer) {
  const auto address = reinterpret_cast<uintptr_t>(pointer);
  auto it = pinned_ranges().upper_bound(address);
  if (it == pinned_ranges().begin()) return false;
  --it;
  return address < it->first + it->second;
}

void run_until(FakeStream* stream, uint64_t position) {
  while (stream->executed < position) {
    std::function<void()> operation = std::move(stream->queued.front());
    stream->queued.pop_front();
    ++stream->executed;
    operation();
  }
}

// The device's memory as cudaMemGetInfo reports it: what was free at the start less what
// cudaMalloc holds now; an allocation past it fails as on a GPU.
struct FakeDeviceMemory {
  std::mutex mutex;
  uint64_t free_at_start = fi::test::kReferenceDeviceFree;
  uint64_t total = fi::test::kReferenceDeviceTotal;
  uint64_t allocated = 0;
  uint64_t peak = 0;  // the most allocated at once since the last reset
  std::unordered_map<void*, uint64_t> sizes;
};
FakeDeviceMemory& device_memory() {
  // Never destroyed: static objects destroyed after it may still free device memory.
  static FakeDeviceMemory* memory = new FakeDeviceMemory;
  return *memory;
}
void run_all() {
  for (FakeStream* stream : live_streams()) run_until(stream, stream->enqueued);
}

const bool kEagerCopyStreams = std::getenv("FLEXINFER_REFERENCE_EAGER_COPIES") != nullptr;

void enqueue(cudaStream_t handle, std::function<void()> operation, bool kernel = false) {
  if (!handle) {  // the legacy default stream: waits for all others
    run_all();
    operation();
    return;
  }
  auto* stream = reinterpret_cast<FakeStream*>(handle);
  stream->ran_kernels |= kernel;
  stream->queued.push_back(std::move(operation));
  ++stream->enqueued;
  if (kEagerCopyStreams && !stream->ran_kernels) run_until(stream, stream->enqueued);
}

// A kernel or cuBLAS call on stream `handle` (a Stream's handle()).
void launch(void* handle, std::function<void()> kernel) {
  enqueue(static_cast<cudaStream_t>(handle), std::move(kernel), true);
}

}  // namespace

// The CUDA runtime calls cuda/ makes, on host memory.
extern "C" {
cudaError_t cudaGetLastError() { return cudaSuccess; }
const char* cudaGetErrorString(cudaError_t error) {
  if (error == cudaSuccess) return "no error";
  return error == cudaErrorMemoryAllocation ? "out of memory" : "invalid argument";
}
cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* properties, int) {
  *properties = cudaDeviceProp{};
  std::strcpy(properties->name, "host-memory reference device");
  properties->major = 9;
  {
    const std::lock_guard lock(device_memory().mutex);
    properties->totalGlobalMem = device_memory().total;
  }
  properties->multiProcessorCount = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  FakeDeviceMemory& memory = device_memory();
  const std::lock_guard lock(memory.mutex);
  *free_bytes = memory.free_at_start > memory.allocated ? memory.free_at_start - memory.allocated : 0;
  *total_bytes = memory.total;
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** pointer, size_t bytes) {
  const uint64_t rounded = (bytes + 255) / 256 * 256;
  FakeDeviceMemory& memory = device_memory();
  const std::lock_guard lock(memory.mutex);
  if (memory.allocated + rounded > memory.free_at_start) return cudaErrorMemoryAllocation;
  *pointer = std::aligned_alloc(256, rounded);
  if (!*pointer) return cudaErrorMemoryAllocation;
  memory.allocated += rounded;
  memory.peak = std::max(memory.peak, memory.allocated);
  memory.sizes[*pointer] = rounded;
  return cudaSuccess;
}
cudaError_t cudaFree(void* pointer) {
  run_all();
  if (!pointer) return cudaSuccess;
  FakeDeviceMemory& memory = device_memory();
  const std::lock_guard lock(memory.mutex);
  const auto it = memory.sizes.find(pointer);
  if (it == memory.sizes.end()) return cudaErrorInvalidValue;
  memory.allocated -= it->second;
  memory.sizes.erase(it);
  std::free(pointer);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** pointer, size_t bytes, unsigned int) {
  const size_t rounded = (bytes + 4095) / 4096 * 4096;
  *pointer = std::aligned_alloc(4096, rounded);
  if (!*pointer) return cudaErrorMemoryAllocation;
  pinned_ranges()[reinterpret_cast<uintptr_t>(*pointer)] = rounded;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* pointer) {
  run_all();
  pinned_ranges().erase(reinterpret_cast<uintptr_t>(pointer));
  std::free(pointer);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* destination, const void* source, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (kind == cudaMemcpyHostToDevice && !is_pinned(source)) {
    auto taken = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(source),
                                                        static_cast<const uint8_t*>(source) + bytes);
    enqueue(stream, [=] { std::memcpy(destination, taken->data(), bytes); });
    return cudaSuccess;
  }
  enqueue(stream, [=] { std::memcpy(destination, source, bytes); });
  if (kind == cudaMemcpyDeviceToHost && !is_pinned(destination) && stream) {
    auto* fake = reinterpret_cast<FakeStream*>(stream);
    run_until(fake, fake->enqueued);
  }
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* destination, int value, size_t bytes, cudaStream_t stream) {
  enqueue(stream, [=] { std::memset(destination, value, bytes); });
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
  auto* fake = new FakeStream;
  live_streams().insert(fake);
  *stream = reinterpret_cast<cudaStream_t>(fake);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  auto* fake = reinterpret_cast<FakeStream*>(stream);
  run_until(fake, fake->enqueued);  // CUDA lets queued work finish
  live_streams().erase(fake);
  delete fake;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (!stream) {
    run_all();
    return cudaSuccess;
  }
  auto* fake = reinterpret_cast<FakeStream*>(stream);
  run_until(fake, fake->enqueued);
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
  const FakeEvent recorded = *reinterpret_cast<FakeEvent*>(event);
  if (recorded.stream) enqueue(stream, [recorded] { run_until(recorded.stream, recorded.position); });
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) {
  *event = reinterpret_cast<cudaEvent_t>(new FakeEvent);
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete reinterpret_cast<FakeEvent*>(event);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  auto* fake = reinterpret_cast<FakeStream*>(stream);
  *reinterpret_cast<FakeEvent*>(event) = {fake, fake ? fake->enqueued : 0};
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  const FakeEvent& recorded = *reinterpret_cast<FakeEvent*>(event);
  if (recorded.stream) run_until(recorded.stream, recorded.position);
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* milliseconds, cudaEvent_t start, cudaEvent_t end) {
  cudaEventSynchronize(start);
  cudaEventSynchronize(end);
  *milliseconds = 1.0f;
  return cudaSuccess;
}
}

namespace fi::test {

void set_reference_device_memory(uint64_t free_bytes, uint64_t total_bytes) {
  FakeDeviceMemory& memory = device_memory();
  const std::lock_guard lock(memory.mutex);
  // Free counts from the allocations still held, as it would on a device with other users.
  memory.free_at_start = free_bytes + memory.allocated;
  memory.total = total_bytes;
}

uint64_t reference_device_allocated() {
  FakeDeviceMemory& memory = device_memory();
  const std::lock_guard lock(memory.mutex);
  return memory.allocated;
}

uint64_t reset_reference_device_peak() {
  FakeDeviceMemory& memory = device_memory();
  const std::lock_guard lock(memory.mutex);
  memory.peak = memory.allocated;
  return memory.allocated;
}

uint64_t reference_device_peak() {
  FakeDeviceMemory& memory = device_memory();
  const std::lock_guard lock(memory.mutex);
  return memory.peak;
}

}  // namespace fi::test

namespace fi::cuda {

namespace {

float dot_row(const DeviceMatrix& w, int64_t row, const float* x) {
  const uint8_t* data = w.row(row);
  float sum = 0.0f;
  for (int64_t g = 0; g * kGroup < w.cols; ++g) {
    const int valid = static_cast<int>(std::min<int64_t>(kGroup, w.cols - g * kGroup));
    float decoded[kGroup];
    decode_group(w.type, data, g, valid, decoded);
    for (int i = 0; i < valid; ++i) sum += decoded[i] * x[g * kGroup + i];
  }
  return sum;
}

void decode_row(const DeviceMatrix& w, int64_t row, float* out) {
  const uint8_t* data = w.row(row);
  for (int64_t g = 0; g * kGroup < w.cols; ++g) {
    const int valid = static_cast<int>(std::min<int64_t>(kGroup, w.cols - g * kGroup));
    float decoded[kGroup];
    decode_group(w.type, data, g, valid, decoded);
    std::copy(decoded, decoded + valid, out + g * kGroup);
  }
}

}  // namespace

void matvec(const DeviceMatrix& w, const float* x, int64_t tokens, float* y, const Stream& stream, bool accumulate) {
  if (tokens < 1 || tokens > kMaxMatvecTokens) fail("internal: matvec of %lld tokens", static_cast<long long>(tokens));
  require_aligned(w, x, "matvec");
  launch(stream.handle(), [=] {
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t r = 0; r < w.rows; ++r) {
        const float sum = dot_row(w, r, x + t * w.cols);
        y[t * w.rows + r] = accumulate ? y[t * w.rows + r] + sum : sum;
      }
  });
}

void dequantize_to_half(const DeviceMatrix& w, int64_t first_row, int64_t rows, uint16_t* out, const Stream& stream) {
  require_aligned(w, nullptr, "decode_rows");
  launch(stream.handle(), [=] {
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = 0; r < rows; ++r) {
      decode_row(w, first_row + r, row.data());
      for (int64_t k = 0; k < w.cols; ++k) out[r * w.cols + k] = fp32_to_fp16(row[k]);
    }
  });
}

void floats_to_half(const float* x, int64_t count, uint16_t* out, const Stream& stream) {
  launch(stream.handle(), [=] {
    for (int64_t i = 0; i < count; ++i) out[i] = fp32_to_fp16(std::clamp(x[i], -kHalfMax, kHalfMax));
  });
}

void embed(const DeviceMatrix& table, const int32_t* tokens, int64_t count, float* out, const Stream& stream) {
  launch(stream.handle(), [=] {
    for (int64_t t = 0; t < count; ++t) decode_row(table, tokens[t], out + t * table.cols);
  });
}

void rms_norm(const float* x, const float* weight, float* out, int64_t tokens, int64_t dim, double eps, const Stream& stream) {
  launch(stream.handle(), [=] {
    for (int64_t t = 0; t < tokens; ++t) {
      double squares = 0.0;
      for (int64_t i = 0; i < dim; ++i) squares += static_cast<double>(x[t * dim + i]) * x[t * dim + i];
      const auto scale = static_cast<float>(1.0 / std::sqrt(squares / static_cast<double>(dim) + eps));
      for (int64_t i = 0; i < dim; ++i) out[t * dim + i] = x[t * dim + i] * scale * weight[i];
    }
  });
}

void rope_and_store_kv(float* q, float* k, const float* v, int64_t tokens, const TokenPlace* places,
                       const double* inverse_frequencies, const AttentionShape& shape, uint16_t* key_cache,
                       uint16_t* value_cache, const Stream& stream) {
  launch(stream.handle(), [=] {
    const int64_t dim = shape.n_heads * shape.head_dim, kv_dim = shape.n_kv_heads * shape.head_dim;
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t pairs = shape.rope_dim / 2;
      const int64_t row = static_cast<int64_t>(places[t].first_row) + places[t].position;
      auto rotate = [&](float* head) {
        for (int64_t i = 0; i < pairs; ++i) {
          const double angle = static_cast<double>(places[t].position) * inverse_frequencies[i];
          const auto c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
          float& a = shape.neox_rope ? head[i] : head[2 * i];
          float& b = shape.neox_rope ? head[i + pairs] : head[2 * i + 1];
          const float a0 = a, b0 = b;
          a = a0 * c - b0 * s;
          b = a0 * s + b0 * c;
        }
      };
      for (int64_t h = 0; h < shape.n_heads; ++h) rotate(q + t * dim + h * shape.head_dim);
      for (int64_t h = 0; h < shape.n_kv_heads; ++h) rotate(k + t * kv_dim + h * shape.head_dim);
      for (int64_t i = 0; i < kv_dim; ++i) {
        key_cache[row * kv_dim + i] = fp32_to_fp16(k[t * kv_dim + i]);
        value_cache[row * kv_dim + i] = fp32_to_fp16(v[t * kv_dim + i]);
      }
    }
  });
}

void attention(const float* q, const uint16_t* key_cache, const uint16_t* value_cache, int64_t tokens,
               const TokenPlace* places, const AttentionShape& shape, float* out, const Stream& stream) {
  launch(stream.handle(), [=] {
    const int64_t dim = shape.n_heads * shape.head_dim, kv_dim = shape.n_kv_heads * shape.head_dim;
    const auto scale = static_cast<double>(shape.scale);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < shape.n_heads; ++h) {
        const int64_t kv_offset = h / (shape.n_heads / shape.n_kv_heads) * shape.head_dim;
        const int64_t visible = static_cast<int64_t>(places[t].position) + 1;
        const uint16_t* keys = key_cache + static_cast<int64_t>(places[t].first_row) * kv_dim;
        const uint16_t* values = value_cache + static_cast<int64_t>(places[t].first_row) * kv_dim;
        std::vector<double> scores(static_cast<size_t>(visible));
        double max_score = -INFINITY, total = 0.0;
        for (int64_t p = 0; p < visible; ++p) {
          double dot = 0.0;
          for (int64_t i = 0; i < shape.head_dim; ++i)
            dot += q[t * dim + h * shape.head_dim + i] * fp16_to_fp32(keys[p * kv_dim + kv_offset + i]);
          scores[p] = dot * scale;
          max_score = std::max(max_score, scores[p]);
        }
        for (double& s : scores) total += (s = std::exp(s - max_score));
        for (int64_t i = 0; i < shape.head_dim; ++i) {
          double sum = 0.0;
          for (int64_t p = 0; p < visible; ++p) sum += scores[p] * fp16_to_fp32(values[p * kv_dim + kv_offset + i]);
          out[t * dim + h * shape.head_dim + i] = static_cast<float>(sum / total);
        }
      }
  });
}

void add_bias(float* x, const float* bias, int64_t tokens, int64_t width, const Stream& stream) {
  launch(stream.handle(), [=] {
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t i = 0; i < width; ++i) x[t * width + i] += bias[i];
  });
}

void deinterleave_rows(const uint8_t* interleaved, const uint16_t* offsets, int64_t rows, int64_t row_bytes,
                       int64_t block_bytes, uint8_t* plain, const Stream& stream) {
  if (rows % 8 != 0 || block_bytes <= 0 || row_bytes % block_bytes != 0)
    fail("internal: %lld rows of %lld bytes cannot be deinterleaved in blocks of %lld", static_cast<long long>(rows),
         static_cast<long long>(row_bytes), static_cast<long long>(block_bytes));
  launch(stream.handle(), [=] {
    for (int64_t group = 0; group < rows / 8; ++group)
      for (int64_t row = 0; row < 8; ++row)
        for (int64_t block = 0; block < row_bytes / block_bytes; ++block)
          for (int64_t j = 0; j < block_bytes; ++j)
            plain[(group * 8 + row) * row_bytes + block * block_bytes + j] =
                interleaved[group * 8 * row_bytes + block * 8 * block_bytes + offsets[row * block_bytes + j]];
  });
}

void gather_rows(const float* x, const int32_t* rows, int64_t count, int64_t width, float* out, const Stream& stream) {
  launch(stream.handle(), [=] {
    for (int64_t i = 0; i < count; ++i) std::copy(x + rows[i] * width, x + (rows[i] + 1) * width, out + i * width);
  });
}

void scatter_rows(const float* x, const int32_t* rows, int64_t count, int64_t width, float* out, const Stream& stream) {
  launch(stream.handle(), [=] {
    for (int64_t i = 0; i < count; ++i) std::copy(x + i * width, x + (i + 1) * width, out + rows[i] * width);
  });
}

void add_weighted_rows(const float* rows, const float* weights, int64_t tokens, int64_t k, int64_t width, float* x,
                       const Stream& stream) {
  launch(stream.handle(), [=] {
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t e = 0; e < width; ++e) {
        float sum = rows[(t * k) * width + e] * weights[t * k];
        for (int64_t j = 1; j < k; ++j) sum += rows[(t * k + j) * width + e] * weights[t * k + j];
        x[t * width + e] += sum;
      }
  });
}

void swiglu(float* gate, const float* up, int64_t count, const Stream& stream) {
  launch(stream.handle(), [=] {
    for (int64_t i = 0; i < count; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  });
}

Blas::Blas(const Stream& stream, void*, uint64_t) : handle_(stream.handle()) {}
Blas::~Blas() = default;

void Blas::gemm(const uint16_t* w, int64_t rows, int64_t cols, const uint16_t* x, int64_t tokens, float* y,
                int64_t y_stride, bool accumulate) {
  launch(handle_, [=] {
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        float sum = 0.0f;
        for (int64_t k = 0; k < cols; ++k) sum += fp16_to_fp32(w[r * cols + k]) * fp16_to_fp32(x[t * cols + k]);
        float& out = y[t * y_stride + r];
        out = accumulate ? out + sum : sum;
      }
  });
}

}  // namespace fi::cuda
