#pragma once
// Tokenizers read from GGUF metadata that give llama.cpp's token ids: "llama" (SentencePiece-style
// with byte fallback) and "gpt2" (byte-level BPE with merges) with the pre-tokenizers "gpt-2",
// "llama-bpe" and "qwen2". Files asking for anything else are refused at load.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/gguf.h"

namespace fi {

enum class TokenKind : uint8_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

class Tokenizer {
 public:
  enum class Model { Spm, Gpt2 };
  // Throws Error when the file has no usable tokenizer or one this class does not reproduce.
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& file);
  ~Tokenizer();

  Model model() const { return model_; }
  int32_t size() const { return static_cast<int32_t>(texts_.size()); }
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  // tokenizer.ggml.add_bos_token, or llama.cpp's default for the vocabulary where it is absent.
  bool adds_bos() const { return add_bos_; }
  const std::string& text(int32_t token) const { return texts_.at(static_cast<size_t>(token)); }
  TokenKind kind(int32_t token) const { return kinds_.at(static_cast<size_t>(token)); }
  // llama.cpp's end-of-generation set: the eos/eot/eom and FIM pad/repo/separator ids and every
  // token whose text is a known end-of-turn marker (<|eot_id|>, <|im_end|>, ...). Sorted.
  const std::vector<int32_t>& end_of_generation_tokens() const { return end_of_generation_; }
  bool is_end_of_generation(int32_t token) const;

  // Text to ids. User-defined tokens written in the text always map to their ids; control tokens
  // (e.g. "<s>") only when parse_special, else they are tokenized literally. BOS is prepended when
  // add_bos and the vocabulary adds one (llama.cpp's add_special).
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;
  // The bytes a token stands for; control tokens decode to nothing.
  std::string piece(int32_t token) const;
  // Concatenated pieces; SentencePiece's leading space (from the space prefix) is removed.
  std::string decode(const std::vector<int32_t>& tokens) const;
  // Whether the first generated piece after BOS loses its leading space (SentencePiece style).
  bool strips_leading_space() const { return model_ == Model::Spm && add_space_prefix_; }

 private:
  class Splitter;  // the BPE pre-tokenizer: a compiled regular expression
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

  Tokenizer();
  void load_special_tokens(const GgufFile& file);
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  int32_t find(std::string_view text) const;

  Model model_ = Model::Spm;
  std::vector<std::string> texts_;
  std::vector<float> scores_;
  std::vector<TokenKind> kinds_;
  StringMap ids_;
  StringMap merge_ranks_;  // "left right" -> rank
  std::unique_ptr<Splitter> splitter_;
  bool ignore_merges_ = false;  // a pre-token that is itself a token is emitted whole (Llama 3)
  std::vector<int32_t> specials_;  // tokens matched in text before tokenizing, longest first
  std::vector<int32_t> end_of_generation_;
  int32_t bos_ = -1, eos_ = -1, unknown_ = -1;
  bool add_bos_ = true;
  bool add_space_prefix_ = true;
  std::array<int32_t, 256> byte_tokens_{};  // SentencePiece's <0xXX> tokens, -1 where absent
};

}  // namespace fi
