// Scalar reference kernels and weight quantizers. Clarity over speed: SIMD kernels are tested
// against these.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "host/kernels/fp16.h"
#include "host/kernels/quant.h"
#include "io/error.h"

namespace fi {

ActivationFormat activation_format(TensorType weight_type) {
  switch (weight_type) {
    case TensorType::Q4_0: case TensorType::Q8_0: return ActivationFormat::Q8;
    case TensorType::Q4_K: case TensorType::Q5_K: case TensorType::Q6_K: return ActivationFormat::Q8_K;
    default: return ActivationFormat::F32;
  }
}

size_t activation_row_bytes(TensorType weight_type, int64_t n) {
  switch (activation_format(weight_type)) {
    case ActivationFormat::Q8: return static_cast<size_t>(n) + 2 * static_cast<size_t>(n / kQK) * sizeof(float);
    case ActivationFormat::Q8_K: return static_cast<size_t>(n / kQKK) * sizeof(BlockQ8_K);
    default: return static_cast<size_t>(n) * sizeof(float);
  }
}

namespace {

// Q6_K element e: its 6-bit code (0..63).
int q6_code(const BlockQ6_K& block, int e) {
  const int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
  const uint8_t low_byte = block.ql[64 * half + l + (quarter & 1) * 32];
  const int low = quarter < 2 ? (low_byte & 0xF) : (low_byte >> 4);
  const int high = (block.qh[32 * half + l] >> (2 * quarter)) & 3;
  return low | (high << 4);
}

int q4k_code(const BlockQ4_K& block, int e) {
  const int sub = e / 32, l = e % 32;
  const uint8_t byte = block.qs[(sub / 2) * 32 + l];
  return sub % 2 ? (byte >> 4) : (byte & 0xF);
}

int q5k_code(const BlockQ5_K& block, int e) {
  const int sub = e / 32, l = e % 32;
  const uint8_t byte = block.qs[(sub / 2) * 32 + l];
  const int low = sub % 2 ? (byte >> 4) : (byte & 0xF);
  return low | (((block.qh[l] >> sub) & 1) << 4);
}

int q4_0_code(const BlockQ4_0& block, int e) {
  return e < 16 ? (block.qs[e] & 0xF) : (block.qs[e - 16] >> 4);
}

int nearest(float x) { return static_cast<int>(std::nearbyint(x)); }

void quantize_q8_0(const float* x, BlockQ8_0* out, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[b * kQK + j]));
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    out[b].d = fp32_to_fp16(amax / 127.0f);
    for (int j = 0; j < kQK; ++j) out[b].qs[j] = static_cast<int8_t>(nearest(x[b * kQK + j] * id));
  }
}

void quantize_q8_row(const float* x, Q8Row out, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[b * kQK + j]));
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    out.scales[b] = fp16_to_fp32(fp32_to_fp16(amax / 127.0f));  // fp16 like llama.cpp's Q8_0
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      out.values[b * kQK + j] = static_cast<int8_t>(nearest(x[b * kQK + j] * id));
      sum += out.values[b * kQK + j];
    }
    out.scaled_sums[b] = out.scales[b] * static_cast<float>(sum);
  }
}

void quantize_q8_k(const float* x, BlockQ8_K* out, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const float* v = x + b * kQKK;
    float amax = 0.0f;
    for (int j = 0; j < kQKK; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    out[b].d = amax / 127.0f;
    for (int j = 0; j < kQKK; ++j) out[b].qs[j] = static_cast<int8_t>(nearest(v[j] * id));
    for (int g = 0; g < kQKK / 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += out[b].qs[g * 16 + j];
      out[b].bsums[g] = static_cast<int16_t>(sum);
    }
  }
}

}  // namespace

void dequantize_row(TensorType type, const void* source, float* y, int64_t n) {
  switch (type) {
    case TensorType::F32: std::memcpy(y, source, static_cast<size_t>(n) * 4); return;
    case TensorType::F16: {
      const auto* h = static_cast<const uint16_t*>(source);
      for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(h[i]);
      return;
    }
    case TensorType::BF16: {
      const auto* h = static_cast<const uint16_t*>(source);
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(h[i]);
      return;
    }
    case TensorType::Q8_0: {
      const auto* blocks = static_cast<const BlockQ8_0*>(source);
      for (int64_t b = 0; b < n / kQK; ++b) {
        const float d = fp16_to_fp32(blocks[b].d);
        for (int j = 0; j < kQK; ++j) y[b * kQK + j] = d * blocks[b].qs[j];
      }
      return;
    }
    case TensorType::Q4_0: {
      const auto* blocks = static_cast<const BlockQ4_0*>(source);
      for (int64_t b = 0; b < n / kQK; ++b) {
        const float d = fp16_to_fp32(blocks[b].d);
        for (int j = 0; j < kQK; ++j) y[b * kQK + j] = d * (q4_0_code(blocks[b], j) - 8);
      }
      return;
    }
    case TensorType::Q4_K: {
      const auto* blocks = static_cast<const BlockQ4_K*>(source);
      for (int64_t b = 0; b < n / kQKK; ++b) {
        const float d = fp16_to_fp32(blocks[b].d), dmin = fp16_to_fp32(blocks[b].dmin);
        for (int e = 0; e < kQKK; ++e) {
          uint8_t scale, min;
          k_scale_min(e / 32, blocks[b].scales, &scale, &min);
          y[b * kQKK + e] = d * scale * q4k_code(blocks[b], e) - dmin * min;
        }
      }
      return;
    }
    case TensorType::Q5_K: {
      const auto* blocks = static_cast<const BlockQ5_K*>(source);
      for (int64_t b = 0; b < n / kQKK; ++b) {
        const float d = fp16_to_fp32(blocks[b].d), dmin = fp16_to_fp32(blocks[b].dmin);
        for (int e = 0; e < kQKK; ++e) {
          uint8_t scale, min;
          k_scale_min(e / 32, blocks[b].scales, &scale, &min);
          y[b * kQKK + e] = d * scale * q5k_code(blocks[b], e) - dmin * min;
        }
      }
      return;
    }
    case TensorType::Q6_K: {
      const auto* blocks = static_cast<const BlockQ6_K*>(source);
      for (int64_t b = 0; b < n / kQKK; ++b) {
        const float d = fp16_to_fp32(blocks[b].d);
        for (int e = 0; e < kQKK; ++e)
          y[b * kQKK + e] = d * blocks[b].scales[e / 16] * (q6_code(blocks[b], e) - 32);
      }
      return;
    }
  }
  fail("internal: dequantize of unsupported type");
}

namespace reference {

void quantize_activations(TensorType weight_type, const float* x, void* destination, int64_t n) {
  switch (activation_format(weight_type)) {
    case ActivationFormat::Q8: quantize_q8_row(x, Q8Row::at(destination, n), n); return;
    case ActivationFormat::Q8_K: quantize_q8_k(x, static_cast<BlockQ8_K*>(destination), n); return;
    case ActivationFormat::F32: std::memcpy(destination, x, static_cast<size_t>(n) * 4); return;
  }
}

float vec_dot(TensorType type, int64_t n, const void* weight_row, const void* activations) {
  switch (type) {
    case TensorType::F32: case TensorType::F16: case TensorType::BF16: {
      const auto* x = static_cast<const float*>(activations);
      float w[256];
      double sum = 0.0;
      for (int64_t i = 0; i < n; i += 256) {
        const int64_t chunk = std::min<int64_t>(256, n - i);
        const size_t element_bytes = type == TensorType::F32 ? 4 : 2;
        dequantize_row(type, static_cast<const char*>(weight_row) + i * element_bytes, w, chunk);
        for (int64_t j = 0; j < chunk; ++j) sum += static_cast<double>(w[j]) * x[i + j];
      }
      return static_cast<float>(sum);
    }
    case TensorType::Q8_0: case TensorType::Q4_0: {
      const ConstQ8Row a = ConstQ8Row::at(activations, n);
      float sum = 0.0f;
      for (int64_t b = 0; b < n / kQK; ++b) {
        int isum = 0;
        float dw;
        if (type == TensorType::Q8_0) {
          const auto& w = static_cast<const BlockQ8_0*>(weight_row)[b];
          for (int j = 0; j < kQK; ++j) isum += w.qs[j] * a.values[b * kQK + j];
          dw = fp16_to_fp32(w.d);
        } else {
          const auto& w = static_cast<const BlockQ4_0*>(weight_row)[b];
          for (int j = 0; j < kQK; ++j) isum += (q4_0_code(w, j) - 8) * a.values[b * kQK + j];
          dw = fp16_to_fp32(w.d);
        }
        sum += dw * a.scales[b] * static_cast<float>(isum);
      }
      return sum;
    }
    case TensorType::Q4_K: case TensorType::Q5_K: {
      const auto* a = static_cast<const BlockQ8_K*>(activations);
      float sum = 0.0f;
      for (int64_t b = 0; b < n / kQKK; ++b) {
        const uint8_t* scales;
        float d, dmin;
        if (type == TensorType::Q4_K) {
          const auto& w = static_cast<const BlockQ4_K*>(weight_row)[b];
          scales = w.scales;
          d = fp16_to_fp32(w.d);
          dmin = fp16_to_fp32(w.dmin);
        } else {
          const auto& w = static_cast<const BlockQ5_K*>(weight_row)[b];
          scales = w.scales;
          d = fp16_to_fp32(w.d);
          dmin = fp16_to_fp32(w.dmin);
        }
        int sum_scaled = 0, sum_mins = 0;
        for (int sub = 0; sub < 8; ++sub) {
          uint8_t scale, min;
          k_scale_min(sub, scales, &scale, &min);
          int dot = 0;
          for (int l = 0; l < 32; ++l) {
            const int e = sub * 32 + l;
            const int code = type == TensorType::Q4_K ? q4k_code(static_cast<const BlockQ4_K*>(weight_row)[b], e)
                                                      : q5k_code(static_cast<const BlockQ5_K*>(weight_row)[b], e);
            dot += code * a[b].qs[e];
          }
          sum_scaled += scale * dot;
          sum_mins += min * (a[b].bsums[2 * sub] + a[b].bsums[2 * sub + 1]);
        }
        sum += a[b].d * (d * static_cast<float>(sum_scaled) - dmin * static_cast<float>(sum_mins));
      }
      return sum;
    }
    case TensorType::Q6_K: {
      const auto* a = static_cast<const BlockQ8_K*>(activations);
      const auto* w = static_cast<const BlockQ6_K*>(weight_row);
      float sum = 0.0f;
      for (int64_t b = 0; b < n / kQKK; ++b) {
        int isum = 0;
        for (int g = 0; g < kQKK / 16; ++g) {
          int dot = 0;
          for (int l = 0; l < 16; ++l) dot += (q6_code(w[b], g * 16 + l) - 32) * a[b].qs[g * 16 + l];
          isum += w[b].scales[g] * dot;
        }
        sum += fp16_to_fp32(w[b].d) * a[b].d * static_cast<float>(isum);
      }
      return sum;
    }
  }
  fail("internal: vec_dot of unsupported type");
}

void vec_dot_tokens(TensorType weight_type, int64_t n, const void* weight_row, const void* activations,
                    size_t activation_stride, int tokens, float* out) {
  for (int t = 0; t < tokens; ++t)
    out[t] = reference::vec_dot(weight_type, n, weight_row, static_cast<const uint8_t*>(activations) + t * activation_stride);
}

void add_scaled_f16(int64_t n, float weight, const uint16_t* row, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] += weight * fp16_to_fp32(row[i]);
}

}  // namespace reference

namespace {

// Asymmetric 4/5-bit K-quant encoder shared by Q4_K (levels 15) and Q5_K (levels 31): per
// sub-block of 32 a scale and a min, both re-quantized to 6 bits against the block's d and dmin.
struct KQuantResult {
  float d, dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t codes[kQKK];
};

KQuantResult quantize_k_block(const float* x, int levels) {
  KQuantResult result{};
  float sub_scale[8], sub_min[8];
  for (int sub = 0; sub < 8; ++sub) {
    float lo = x[sub * 32], hi = x[sub * 32];
    for (int l = 1; l < 32; ++l) {
      lo = std::min(lo, x[sub * 32 + l]);
      hi = std::max(hi, x[sub * 32 + l]);
    }
    lo = std::min(lo, 0.0f);
    sub_scale[sub] = (hi - lo) / levels;
    sub_min[sub] = -lo;
  }
  const float max_scale = *std::max_element(sub_scale, sub_scale + 8);
  const float max_min = *std::max_element(sub_min, sub_min + 8);
  result.d = max_scale / 63.0f;
  result.dmin = max_min / 63.0f;
  const float d = fp16_to_fp32(fp32_to_fp16(result.d));
  const float dmin = fp16_to_fp32(fp32_to_fp16(result.dmin));
  for (int sub = 0; sub < 8; ++sub) {
    const int ls = d > 0 ? std::clamp(nearest(sub_scale[sub] / d), 0, 63) : 0;
    const int lm = dmin > 0 ? std::clamp(nearest(sub_min[sub] / dmin), 0, 63) : 0;
    if (sub < 4) {
      result.scales[sub] |= static_cast<uint8_t>(ls);
      result.scales[sub + 4] |= static_cast<uint8_t>(lm);
    } else {
      result.scales[sub + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      result.scales[sub - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      result.scales[sub] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
    const float step = d * ls, offset = dmin * lm;
    for (int l = 0; l < 32; ++l) {
      const int code = step > 0 ? nearest((x[sub * 32 + l] + offset) / step) : 0;
      result.codes[sub * 32 + l] = static_cast<uint8_t>(std::clamp(code, 0, levels));
    }
  }
  return result;
}

}  // namespace

void quantize_row(TensorType type, const float* x, void* destination, int64_t n) {
  switch (type) {
    case TensorType::F32: std::memcpy(destination, x, static_cast<size_t>(n) * 4); return;
    case TensorType::F16: {
      auto* h = static_cast<uint16_t*>(destination);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(x[i]);
      return;
    }
    case TensorType::BF16: {
      auto* h = static_cast<uint16_t*>(destination);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(x[i]);
      return;
    }
    case TensorType::Q8_0: quantize_q8_0(x, static_cast<BlockQ8_0*>(destination), n); return;
    case TensorType::Q4_0: {
      auto* blocks = static_cast<BlockQ4_0*>(destination);
      for (int64_t b = 0; b < n / kQK; ++b) {
        const float* v = x + b * kQK;
        float extreme = 0.0f;  // signed value of largest magnitude maps to code 0
        for (int j = 0; j < kQK; ++j)
          if (std::fabs(v[j]) > std::fabs(extreme)) extreme = v[j];
        const float d = extreme / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        blocks[b].d = fp32_to_fp16(d);
        for (int j = 0; j < kQK / 2; ++j) {
          const int lo = std::clamp(nearest(v[j] * id) + 8, 0, 15);
          const int hi = std::clamp(nearest(v[j + 16] * id) + 8, 0, 15);
          blocks[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
        }
      }
      return;
    }
    case TensorType::Q4_K: {
      auto* blocks = static_cast<BlockQ4_K*>(destination);
      for (int64_t b = 0; b < n / kQKK; ++b) {
        const KQuantResult k = quantize_k_block(x + b * kQKK, 15);
        blocks[b].d = fp32_to_fp16(k.d);
        blocks[b].dmin = fp32_to_fp16(k.dmin);
        std::memcpy(blocks[b].scales, k.scales, kKScaleBytes);
        for (int chunk = 0; chunk < 4; ++chunk)
          for (int l = 0; l < 32; ++l)
            blocks[b].qs[chunk * 32 + l] =
                static_cast<uint8_t>(k.codes[chunk * 64 + l] | (k.codes[chunk * 64 + 32 + l] << 4));
      }
      return;
    }
    case TensorType::Q5_K: {
      auto* blocks = static_cast<BlockQ5_K*>(destination);
      for (int64_t b = 0; b < n / kQKK; ++b) {
        const KQuantResult k = quantize_k_block(x + b * kQKK, 31);
        blocks[b].d = fp32_to_fp16(k.d);
        blocks[b].dmin = fp32_to_fp16(k.dmin);
        std::memcpy(blocks[b].scales, k.scales, kKScaleBytes);
        std::memset(blocks[b].qh, 0, sizeof blocks[b].qh);
        for (int chunk = 0; chunk < 4; ++chunk)
          for (int l = 0; l < 32; ++l) {
            const int lo = k.codes[chunk * 64 + l], hi = k.codes[chunk * 64 + 32 + l];
            blocks[b].qs[chunk * 32 + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
            blocks[b].qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * chunk)) | ((hi >> 4) << (2 * chunk + 1)));
          }
      }
      return;
    }
    case TensorType::Q6_K: {
      auto* blocks = static_cast<BlockQ6_K*>(destination);
      for (int64_t b = 0; b < n / kQKK; ++b) {
        const float* v = x + b * kQKK;
        BlockQ6_K& block = blocks[b];
        std::memset(&block, 0, sizeof block);
        float group_scale[16];
        for (int g = 0; g < 16; ++g) {
          float amax = 0.0f;
          for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(v[g * 16 + l]));
          group_scale[g] = amax / 31.0f;
        }
        const float max_scale = *std::max_element(group_scale, group_scale + 16);
        const float d = fp16_to_fp32(fp32_to_fp16(max_scale / 127.0f));
        block.d = fp32_to_fp16(max_scale / 127.0f);
        for (int g = 0; g < 16; ++g) {
          const int ls = d > 0 ? std::clamp(nearest(group_scale[g] / d), 0, 127) : 0;
          block.scales[g] = static_cast<int8_t>(ls);
          for (int l = 0; l < 16; ++l) {
            const int e = g * 16 + l;
            const int code = ls > 0 ? std::clamp(nearest(v[e] / (d * ls)), -32, 31) + 32 : 32;
            const int half = e / 128, r = e % 128, quarter = r / 32, idx = r % 32;
            uint8_t& low_byte = block.ql[64 * half + idx + (quarter & 1) * 32];
            low_byte |= static_cast<uint8_t>(quarter < 2 ? (code & 0xF) : ((code & 0xF) << 4));
            block.qh[32 * half + idx] |= static_cast<uint8_t>((code >> 4) << (2 * quarter));
          }
        }
      }
      return;
    }
  }
  fail("internal: quantize of unsupported type");
}

}  // namespace fi
