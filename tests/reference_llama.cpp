#include "reference_llama.h"

#include <cmath>

#include "host/kernels/quant.h"
#include "host/kernels/repack.h"

namespace fi::test {

namespace {

using Vector = std::vector<double>;

Vector row_of(const WeightMatrix& w, int64_t r) {
  std::vector<float> values(static_cast<size_t>(w.cols));
  if (w.interleaved) {
    std::vector<BlockQ4_0> blocks(static_cast<size_t>(w.cols / kQK));
    extract_row(w, r, blocks.data());
    dequantize_row(w.type, blocks.data(), values.data(), w.cols);
  } else {
    dequantize_row(w.type, w.row(r), values.data(), w.cols);
  }
  return Vector(values.begin(), values.end());
}

std::vector<Vector> dense(const WeightMatrix& w) {
  std::vector<Vector> rows;
  for (int64_t r = 0; r < w.rows; ++r) rows.push_back(row_of(w, r));
  return rows;
}

Vector multiply(const std::vector<Vector>& w, const Vector& x) {
  Vector y(w.size());
  for (size_t r = 0; r < w.size(); ++r) {
    double sum = 0;
    for (size_t i = 0; i < x.size(); ++i) sum += w[r][i] * x[i];
    y[r] = sum;
  }
  return y;
}

Vector rms_norm(const Vector& x, const float* weight, double eps) {
  double sum = 0;
  for (double v : x) sum += v * v;
  const double scale = 1.0 / std::sqrt(sum / static_cast<double>(x.size()) + eps);
  Vector y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * weight[i];
  return y;
}

void rope(double* head, int64_t rope_dim, int64_t position, double base, const float* factors) {
  for (int64_t i = 0; i < rope_dim / 2; ++i) {
    double frequency = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(rope_dim));
    if (factors) frequency /= factors[i];
    const double angle = static_cast<double>(position) * frequency;
    const double a = head[2 * i], b = head[2 * i + 1];
    head[2 * i] = a * std::cos(angle) - b * std::sin(angle);
    head[2 * i + 1] = a * std::sin(angle) + b * std::cos(angle);
  }
}

}  // namespace

std::vector<float> reference_logits(const LlamaModel& model, const std::vector<int32_t>& tokens) {
  const LlamaConfig& c = model.config();
  const LlamaWeights& w = model.weights();
  struct Layer {
    std::vector<Vector> q, k, v, o, gate, up, down;
  };
  std::vector<Layer> layers;
  for (const LayerWeights& l : w.layers)
    layers.push_back({dense(l.wq), dense(l.wk), dense(l.wv), dense(l.wo), dense(l.w_gate), dense(l.w_up), dense(l.w_down)});
  const std::vector<Vector> output = dense(w.output);

  std::vector<std::vector<Vector>> keys(c.n_layers), values(c.n_layers);
  std::vector<float> logits;
  for (size_t position = 0; position < tokens.size(); ++position) {
    Vector x = row_of(w.token_embedding, tokens[position]);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const Vector xn = rms_norm(x, w.layers[l].attn_norm, c.rms_eps);
      Vector q = multiply(layers[l].q, xn), k = multiply(layers[l].k, xn);
      const Vector v = multiply(layers[l].v, xn);
      for (int64_t h = 0; h < c.n_heads; ++h)
        rope(&q[h * c.head_dim], c.rope_dim, static_cast<int64_t>(position), c.rope_base, w.rope_freq_factors);
      for (int64_t h = 0; h < c.n_kv_heads; ++h)
        rope(&k[h * c.head_dim], c.rope_dim, static_cast<int64_t>(position), c.rope_base, w.rope_freq_factors);
      keys[l].push_back(k);
      values[l].push_back(v);

      Vector attended(c.dim, 0.0);
      for (int64_t h = 0; h < c.n_heads; ++h) {
        const int64_t kv = h / (c.n_heads / c.n_kv_heads);
        std::vector<double> scores(position + 1);
        double max_score = -INFINITY;
        for (size_t p = 0; p <= position; ++p) {
          double dot = 0;
          for (int64_t i = 0; i < c.head_dim; ++i) dot += q[h * c.head_dim + i] * keys[l][p][kv * c.head_dim + i];
          scores[p] = dot / std::sqrt(static_cast<double>(c.head_dim));
          max_score = std::max(max_score, scores[p]);
        }
        double total = 0;
        for (double& s : scores) total += s = std::exp(s - max_score);
        for (size_t p = 0; p <= position; ++p)
          for (int64_t i = 0; i < c.head_dim; ++i)
            attended[h * c.head_dim + i] += scores[p] / total * values[l][p][kv * c.head_dim + i];
      }
      const Vector projected = multiply(layers[l].o, attended);
      for (int64_t i = 0; i < c.dim; ++i) x[i] += projected[i];

      const Vector xf = rms_norm(x, w.layers[l].ffn_norm, c.rms_eps);
      Vector gate = multiply(layers[l].gate, xf);
      const Vector up = multiply(layers[l].up, xf);
      for (size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
      const Vector down = multiply(layers[l].down, gate);
      for (int64_t i = 0; i < c.dim; ++i) x[i] += down[i];
    }
    const Vector out = multiply(output, rms_norm(x, w.output_norm, c.rms_eps));
    logits.insert(logits.end(), out.begin(), out.end());
  }
  return logits;
}

}  // namespace fi::test
