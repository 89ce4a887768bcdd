#pragma once
// A model file bound to its architecture's description (io/architecture.h): the file, its
// hyperparameters, every tensor by role, and the run's context length and batch size. Where the
// weights live is the business of the stores (host/memory) and backends, not of the model.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/architecture.h"
#include "io/gguf.h"

namespace fi {

struct ModelOptions {
  int64_t context = 0;     // KV cache length of each sequence; 0: min(4096, trained context)
  int64_t max_batch = 256;  // tokens per forward pass
  int64_t sequences = 1;    // independent sequences, each with its own KV cache (a server's slots)
};

// Sequences one run may hold at once (a server's --parallel), and tokens of one sequence.
constexpr int64_t kMaxSequences = 256;
constexpr int64_t kMaxContext = int64_t{1} << 24;

class Model {
 public:
  // Opens and checks the file (metadata, every tensor's name, type and shape); throws Error
  // naming the file and what is wrong.
  static std::unique_ptr<Model> open(const std::string& path, const ModelOptions& options = {});

  const GgufFile& file() const { return file_; }
  const ModelConfig& config() const { return config_; }
  const ModelTensors& tensors() const { return tensors_; }
  int64_t context() const { return context_; }
  int64_t sequences() const { return sequences_; }
  // Rows of each layer's KV cache: every sequence's context, sequence s from row s * context on.
  int64_t kv_rows() const { return context_ * sequences_; }
  // A different context length for the run, before anything is placed by it (a default context
  // shortened to fit a budget).
  void set_context(int64_t context);
  int64_t max_batch() const { return max_batch_; }
  bool tied_output() const { return tensors_.tied_output(); }
  // RoPE inverse frequency of each rotated pair (io's scaling and the file's frequency factors
  // applied), shared by every backend.
  const std::vector<double>& inverse_frequencies() const { return inverse_frequencies_; }

 private:
  explicit Model(GgufFile file) : file_(std::move(file)) {}
  GgufFile file_;
  ModelConfig config_;
  ModelTensors tensors_;
  int64_t context_ = 0;
  int64_t sequences_ = 1;
  int64_t max_batch_ = 0;
  std::vector<double> inverse_frequencies_;
};

// RoPE inverse frequency of each rotated pair, in double: base^(-2i/rope_dim), divided by a linear
// scaling's factor, divided by the pair's frequency factor (the file's rope_freqs, else llama3
// scaling's; none: 1).
std::vector<double> rope_inverse_frequencies(const ModelConfig& config, const std::vector<float>& frequency_factors);
// Bytes of the half-precision KV cache of one layer, and of every layer, for `rows` positions (over
// all sequences: Model::kv_rows).
uint64_t kv_cache_layer_bytes(const ModelConfig& config, int64_t rows);
uint64_t kv_cache_bytes(const ModelConfig& config, int64_t rows);
// Llama 3.1's per-pair frequency factors, computed from its scaling parameters as its converter
// does (for files that carry the parameters instead of a rope_freqs tensor, and for make-model).
std::vector<float> llama3_frequency_factors(int64_t rope_dim, double rope_base, const RopeScaling& scaling);
// A small F32 tensor (a norm, a bias, the RoPE factors) read from the file once.
std::vector<float> read_f32_tensor(const GgufFile& file, const TensorInfo& info);
// Memory the process needs outside the arena (code, metadata, tokenizer, thread stacks, logits).
uint64_t runtime_bytes(const GgufFile& file, const ModelConfig& config);

}  // namespace fi
