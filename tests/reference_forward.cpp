#include "reference_forward.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>

#include "host/kernels/quant.h"
#include "io/direct_file.h"

namespace fi::test {

namespace {

using Vector = std::vector<double>;
using Matrix = std::vector<Vector>;

// A tensor's rows, dequantized from the file's bytes.
Matrix read_rows(const Model& model, const TensorInfo* info) {
  Matrix rows;
  if (!info) return rows;
  const std::vector<uint8_t> bytes = read_file_range(model.file().path(), info->file_offset, info->bytes);
  const uint64_t row_size = row_bytes(info->type, info->shape[0]);
  std::vector<float> values(info->shape[0]);
  for (uint64_t r = 0; r < info->rows(); ++r) {
    dequantize_row(info->type, bytes.data() + r * row_size, values.data(), static_cast<int64_t>(values.size()));
    rows.emplace_back(values.begin(), values.end());
  }
  return rows;
}

// Rows [first, first + count) of w times x (all rows by default; one expert's of a stacked matrix).
Vector multiply(const Matrix& w, const Vector& x, size_t first = 0, size_t count = SIZE_MAX) {
  count = std::min(count, w.size() - first);
  Vector y(count);
  for (size_t r = 0; r < count; ++r) {
    double sum = 0;
    for (size_t i = 0; i < x.size(); ++i) sum += w[first + r][i] * x[i];
    y[r] = sum;
  }
  return y;
}

void add(Vector& x, const Matrix& bias) {
  if (bias.empty()) return;
  for (size_t i = 0; i < x.size(); ++i) x[i] += bias[0][i];
}

// RMSNorm of x[begin, begin + n) in place.
void rms_norm(double* x, size_t n, const Vector& weight, double eps) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += x[i] * x[i];
  const double scale = 1.0 / std::sqrt(sum / static_cast<double>(n) + eps);
  for (size_t i = 0; i < n; ++i) x[i] = x[i] * scale * weight[i];
}

Vector normed(Vector x, const Vector& weight, double eps) {
  rms_norm(x.data(), x.size(), weight, eps);
  return x;
}

// Inverse frequency of each rotated pair from the metadata alone: the base's, the linear scaling's,
// and the per-pair factors (the file's rope_freqs, else Llama 3.1's formula).
Vector inverse_frequencies(const Model& model) {
  const ModelConfig& c = model.config();
  const Matrix file_factors = read_rows(model, model.tensors().global(Role::RopeFrequencies));
  Vector frequencies;
  for (int64_t i = 0; i < c.rope_dim / 2; ++i) {
    const double base_frequency = std::pow(c.rope_base, -2.0 * static_cast<double>(i) / static_cast<double>(c.rope_dim));
    double frequency = base_frequency;
    const RopeScaling& s = c.rope_scaling;
    if (s.type == RopeScaling::Type::Linear) frequency /= s.factor;
    if (!file_factors.empty()) {
      frequency /= file_factors[0][static_cast<size_t>(i)];
    } else if (s.type == RopeScaling::Type::Llama3) {
      const double wavelength = 2 * std::numbers::pi / base_frequency;
      const double low = s.original_context / s.low_frequency_factor, high = s.original_context / s.high_frequency_factor;
      if (wavelength > low) {
        frequency /= s.factor;
      } else if (wavelength >= high) {
        const double smooth = (s.original_context / wavelength - s.low_frequency_factor) /
                              (s.high_frequency_factor - s.low_frequency_factor);
        frequency *= (1 - smooth) / s.factor + smooth;
      }
    }
    frequencies.push_back(frequency);
  }
  return frequencies;
}

// Rotates each head's pairs: adjacent (2i, 2i+1) for llama, halves (i, i + rope_dim/2) for NeoX.
void rope(double* head, const ModelConfig& c, const Vector& frequencies, int64_t position) {
  const int64_t pairs = c.rope_dim / 2;
  const bool neox = c.arch->rope_style == RopeStyle::Neox;
  for (int64_t i = 0; i < pairs; ++i) {
    const double angle = static_cast<double>(position) * frequencies[static_cast<size_t>(i)];
    double& a = neox ? head[i] : head[2 * i];
    double& b = neox ? head[i + pairs] : head[2 * i + 1];
    const double a0 = a, b0 = b;
    a = a0 * std::cos(angle) - b0 * std::sin(angle);
    b = a0 * std::sin(angle) + b0 * std::cos(angle);
  }
}

}  // namespace

// SwiGLU FFN: down · (silu(gate · x) * up · x) with optional biases; of expert e of stacked
// matrices (gate/up rows of `width` and down rows of x's size from e on) when e >= 0.
Vector swiglu_ffn(const Matrix& gate, const Matrix& up, const Matrix& down, const Vector& x, int64_t e = -1,
                  size_t width = 0, const Matrix& gate_bias = {}, const Matrix& up_bias = {},
                  const Matrix& down_bias = {}) {
  const size_t first = e < 0 ? 0 : static_cast<size_t>(e) * width, count = e < 0 ? SIZE_MAX : width;
  Vector g = multiply(gate, x, first, count), u = multiply(up, x, first, count);
  add(g, gate_bias);
  add(u, up_bias);
  for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
  Vector out = e < 0 ? multiply(down, g) : multiply(down, g, static_cast<size_t>(e) * x.size(), x.size());
  add(out, down_bias);
  return out;
}

// Mixture of experts: softmax over the router's logits, the k most probable experts (the lower
// index on a tie), their probabilities renormalised, the weighted sum of their FFNs. `margin`
// becomes the gap between the last chosen expert's logit and the best of the rest.
Vector experts_ffn(const Matrix& router, const Matrix& gate, const Matrix& up, const Matrix& down, const Vector& x,
                   const ModelConfig& c, double* margin) {
  const Vector logits = multiply(router, x);
  std::vector<bool> chosen(logits.size(), false);
  std::vector<size_t> picks;
  for (int64_t j = 0; j < c.n_experts_used; ++j) {
    size_t best = logits.size();
    for (size_t e = 0; e < logits.size(); ++e)
      if (!chosen[e] && (best == logits.size() || logits[e] > logits[best])) best = e;
    chosen[best] = true;
    picks.push_back(best);
  }
  double best_rest = -INFINITY;
  for (size_t e = 0; e < logits.size(); ++e)
    if (!chosen[e]) best_rest = std::max(best_rest, logits[e]);
  *margin = logits[picks.back()] - best_rest;
  // Softmax probabilities share one denominator, which renormalising cancels.
  double total = 0;
  for (size_t e : picks) total += std::exp(logits[e] - logits[picks[0]]);
  Vector out(x.size(), 0.0);
  for (size_t e : picks) {
    const Vector y = swiglu_ffn(gate, up, down, x, static_cast<int64_t>(e), static_cast<size_t>(c.expert_ffn_dim));
    const double weight = std::exp(logits[e] - logits[picks[0]]) / total;
    for (size_t i = 0; i < out.size(); ++i) out[i] += weight * y[i];
  }
  return out;
}

std::vector<float> reference_logits(const Model& model, const std::vector<int32_t>& tokens,
                                    std::vector<double>* routing_margins) {
  const ModelConfig& c = model.config();
  const ModelTensors& tensors = model.tensors();
  struct Layer {
    Matrix attn_norm, q, k, v, q_bias, k_bias, v_bias, q_norm, k_norm, o, o_bias;
    Matrix ffn_norm, gate, up, down, gate_bias, up_bias, down_bias;
    Matrix router, gate_exps, up_exps, down_exps;
  };
  std::vector<Layer> layers;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    auto rows = [&](Role role) { return read_rows(model, tensors.layer(l, role)); };
    layers.push_back({rows(Role::AttnNorm), rows(Role::AttnQ), rows(Role::AttnK), rows(Role::AttnV), rows(Role::AttnQBias),
                      rows(Role::AttnKBias), rows(Role::AttnVBias), rows(Role::AttnQNorm), rows(Role::AttnKNorm),
                      rows(Role::AttnOutput), rows(Role::AttnOutputBias), rows(Role::FfnNorm), rows(Role::FfnGate),
                      rows(Role::FfnUp), rows(Role::FfnDown), rows(Role::FfnGateBias), rows(Role::FfnUpBias),
                      rows(Role::FfnDownBias), rows(Role::FfnGateInp), rows(Role::FfnGateExps), rows(Role::FfnUpExps),
                      rows(Role::FfnDownExps)});
  }
  const Matrix embedding = read_rows(model, tensors.global(Role::TokenEmbedding));
  const Matrix output = read_rows(model, &tensors.output());
  const Vector output_norm = read_rows(model, tensors.global(Role::OutputNorm))[0];
  const Vector frequencies = inverse_frequencies(model);
  const double scale = c.attention_scale > 0 ? c.attention_scale : 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  const auto head_dim = static_cast<size_t>(c.head_dim);

  std::vector<std::vector<Vector>> keys(c.n_layers), values(c.n_layers);
  std::vector<float> logits;
  if (routing_margins) routing_margins->assign(tokens.size(), INFINITY);
  for (size_t position = 0; position < tokens.size(); ++position) {
    Vector x = embedding[static_cast<size_t>(tokens[position])];
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const Layer& w = layers[static_cast<size_t>(l)];
      const Vector xn = normed(x, w.attn_norm[0], c.rms_eps);
      Vector q = multiply(w.q, xn), k = multiply(w.k, xn), v = multiply(w.v, xn);
      add(q, w.q_bias);
      add(k, w.k_bias);
      add(v, w.v_bias);
      for (int64_t h = 0; h < c.n_heads; ++h) {
        if (!w.q_norm.empty()) rms_norm(&q[h * head_dim], head_dim, w.q_norm[0], c.rms_eps);
        rope(&q[h * head_dim], c, frequencies, static_cast<int64_t>(position));
      }
      for (int64_t h = 0; h < c.n_kv_heads; ++h) {
        if (!w.k_norm.empty()) rms_norm(&k[h * head_dim], head_dim, w.k_norm[0], c.rms_eps);
        rope(&k[h * head_dim], c, frequencies, static_cast<int64_t>(position));
      }
      keys[l].push_back(k);
      values[l].push_back(v);

      Vector attended(static_cast<size_t>(c.q_dim()), 0.0);
      for (int64_t h = 0; h < c.n_heads; ++h) {
        const size_t kv = static_cast<size_t>(h / (c.n_heads / c.n_kv_heads)) * head_dim;
        std::vector<double> scores(position + 1);
        double max_score = -INFINITY;
        for (size_t p = 0; p <= position; ++p) {
          double dot = 0;
          for (size_t i = 0; i < head_dim; ++i) dot += q[h * head_dim + i] * keys[l][p][kv + i];
          scores[p] = dot * scale;
          max_score = std::max(max_score, scores[p]);
        }
        double total = 0;
        for (double& s : scores) total += s = std::exp(s - max_score);
        for (size_t p = 0; p <= position; ++p)
          for (size_t i = 0; i < head_dim; ++i) attended[h * head_dim + i] += scores[p] / total * values[l][p][kv + i];
      }
      Vector projected = multiply(w.o, attended);
      add(projected, w.o_bias);
      for (int64_t i = 0; i < c.dim; ++i) x[i] += projected[i];

      const Vector xf = normed(x, w.ffn_norm[0], c.rms_eps);
      double margin = INFINITY;
      const Vector ffn = w.router.empty()
                             ? swiglu_ffn(w.gate, w.up, w.down, xf, -1, 0, w.gate_bias, w.up_bias, w.down_bias)
                             : experts_ffn(w.router, w.gate_exps, w.up_exps, w.down_exps, xf, c, &margin);
      if (routing_margins) (*routing_margins)[position] = std::min((*routing_margins)[position], margin);
      for (int64_t i = 0; i < c.dim; ++i) x[i] += ffn[i];
    }
    const Vector out = multiply(output, normed(x, output_norm, c.rms_eps));
    logits.insert(logits.end(), out.begin(), out.end());
  }
  return logits;
}

}  // namespace fi::test
