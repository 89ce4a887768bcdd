// libFuzzer: arbitrary bytes encoded and decoded with real vocabularies — stories260K
// (SentencePiece-style "llama") and the byte-level BPE ones of GPT-2, Llama 3 and Qwen3 (one per
// pre-tokenizer) from ../shared/data, or the files named by FLEXINFER_FUZZ_VOCABS (colon-separated).
// Ids must stay in range, and decoding arbitrary ids must not fail.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "host/text/tokenizer.h"
#include "io/error.h"
#include "io/gguf.h"

namespace {

std::vector<std::unique_ptr<fi::Tokenizer>> load() {
  const char* list = std::getenv("FLEXINFER_FUZZ_VOCABS");
  std::string paths = list ? list
                           : FLEXINFER_SHARED_DATA "/models/stories260K.gguf:" FLEXINFER_SHARED_DATA
                                                   "/vocab/ggml-vocab-gpt-2.gguf:" FLEXINFER_SHARED_DATA
                                                   "/vocab/ggml-vocab-llama3.gguf:" FLEXINFER_SHARED_DATA
                                                   "/vocab/ggml-vocab-qwen3.gguf";
  std::vector<std::unique_ptr<fi::Tokenizer>> tokenizers;
  std::stringstream stream(paths);
  for (std::string path; std::getline(stream, path, ':');) {
    try {
      tokenizers.push_back(fi::Tokenizer::from_gguf(fi::GgufFile::open(path)));
    } catch (const fi::Error& error) {
      std::fprintf(stderr, "fuzz_tokenizer: %s\n", error.what());
      std::abort();
    }
  }
  return tokenizers;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto tokenizers = load();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const auto& tokenizer : tokenizers) {
    for (bool special : {false, true}) {
      const std::vector<int32_t> ids = tokenizer->encode(text, true, special);
      for (int32_t id : ids)
        if (id < 0 || id >= tokenizer->size()) std::abort();
      tokenizer->decode(ids);
    }
    // The same bytes read as token ids.
    std::vector<int32_t> ids;
    for (size_t i = 0; i + 4 <= size; i += 4) {
      uint32_t raw;
      __builtin_memcpy(&raw, data + i, 4);
      ids.push_back(static_cast<int32_t>(raw % static_cast<uint32_t>(tokenizer->size())));
    }
    tokenizer->decode(ids);
  }
  return 0;
}
