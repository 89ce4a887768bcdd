#pragma once
// Picks the next token from logits: repetition, presence and frequency penalties over the recent
// tokens, then top-k, top-p and min-p filtering, then temperature sampling; temperature 0 is
// greedy.
#include <cstdint>
#include <random>
#include <vector>

namespace fi {

struct SamplerParams {
  float temperature = 0.8f;
  int top_k = 40;           // 0 = off
  float top_p = 0.95f;      // 1 = off
  float min_p = 0.05f;      // 0 = off
  float repeat_penalty = 1.0f;     // 1 = off; divides a seen token's positive logit, multiplies a negative one
  int repeat_last_n = 64;          // how many recent tokens the penalties look at
  uint64_t seed = 0;
  float presence_penalty = 0.0f;   // 0 = off; subtracted from a seen token's logit (OpenAI's)
  float frequency_penalty = 0.0f;  // 0 = off; subtracted once per occurrence (OpenAI's)
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& params);
  // logits (n_vocab floats) may be modified. history: tokens so far (prompt and generated).
  int32_t sample(float* logits, int32_t n_vocab, const std::vector<int32_t>& history);

 private:
  SamplerParams params_;
  std::mt19937_64 rng_;
  struct Candidate {
    int32_t id;
    float logit;
  };
  std::vector<Candidate> candidates_;
};

}  // namespace fi
