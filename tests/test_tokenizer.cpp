// Tokenizers against the independent test vectors of ../shared/data/vocab, and round trips.
#include <fstream>
#include <sstream>

#include "host/text/tokenizer.h"
#include "io/error.h"
#include "test_support.h"

namespace fi {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void check_vectors(const std::string& vocab) {
  const std::string base = test::shared_data() + "/vocab/ggml-vocab-" + vocab + ".gguf";
  const auto tokenizer = Tokenizer::from_gguf(GgufFile::open(base));
  const std::string inputs = slurp(base + ".inp");
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t begin = 0;;) {
    const size_t end = inputs.find(separator, begin);
    texts.push_back(inputs.substr(begin, end == std::string::npos ? std::string::npos : end - begin));
    if (end == std::string::npos) break;
    begin = end + separator.size();
  }
  std::istringstream outputs(slurp(base + ".out"));
  std::vector<std::string> lines;
  for (std::string line; std::getline(outputs, line);) lines.push_back(line);
  // The input ends with a separator, so its last string is empty; the .out file has no line for it.
  ASSERT_TRUE(lines.size() == texts.size() || (lines.size() + 1 == texts.size() && texts.back().empty()))
      << lines.size() << " expected lines for " << texts.size() << " strings";
  size_t checked = 0;
  for (size_t index = 0; index < texts.size(); ++index) {
    std::vector<int32_t> expected;
    if (index < lines.size()) {
      std::istringstream ids(lines[index]);
      for (int32_t id; ids >> id;) expected.push_back(id);
    }
    EXPECT_EQ(tokenizer->encode(texts[index], false, false), expected)
        << vocab << " vector " << index << ": '" << texts[index] << "'";
    ++checked;
  }
  EXPECT_GT(checked, 20u);
}

TEST(Tokenizer, LlamaSpmVectors) {
  FI_REQUIRE_SHARED_DATA();
  check_vectors("llama-spm");
}

TEST(Tokenizer, Gpt2Vectors) {
  FI_REQUIRE_SHARED_DATA();
  check_vectors("gpt-2");
}

TEST(Tokenizer, DecodeInvertsEncode) {
  FI_REQUIRE_SHARED_DATA();
  const std::string text = "Hello world! Ünïcödé  text\twith\nnewlines, 123 and emoji \xF0\x9F\x98\x80.";
  for (const char* vocab : {"llama-spm", "gpt-2", "phi-3"}) {
    const auto tokenizer =
        Tokenizer::from_gguf(GgufFile::open(test::shared_data() + "/vocab/ggml-vocab-" + std::string(vocab) + ".gguf"));
    EXPECT_EQ(tokenizer->decode(tokenizer->encode(text, false, false)), text) << vocab;
  }
}

TEST(Tokenizer, ParseSpecialMapsControlTokens) {
  FI_REQUIRE_SHARED_DATA();
  const auto tokenizer = Tokenizer::from_gguf(GgufFile::open(test::shared_data() + "/vocab/ggml-vocab-llama-spm.gguf"));
  const auto literal = tokenizer->encode("<s>hi", false, false);
  const auto special = tokenizer->encode("<s>hi", false, true);
  EXPECT_EQ(special.front(), tokenizer->bos());
  EXPECT_NE(literal.front(), tokenizer->bos());
  EXPECT_GT(literal.size(), special.size());
  EXPECT_EQ(tokenizer->encode("hi", true, false).front(), tokenizer->bos());
}

TEST(Tokenizer, ByteVocabularyOfGeneratedModelsRoundTrips) {
  const std::string path = test::generated_model("byte_vocab", {64, 1, 4, 2, 64, 128, 0, 10000.0, false}, WeightScheme::F32);
  const auto tokenizer = Tokenizer::from_gguf(GgufFile::open(path));
  const std::string text = "any text at all: \xC3\xA9\xE2\x82\xAC \x01\x7F";
  const auto ids = tokenizer->encode(text, true, false);
  EXPECT_EQ(ids.front(), tokenizer->bos());
  EXPECT_EQ(tokenizer->decode(ids), text);
}

TEST(Tokenizer, NamesPreTokenizersItOnlyApproximates) {
  FI_REQUIRE_SHARED_DATA();
  const GgufFile gpt2 = GgufFile::open(test::shared_data() + "/vocab/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(Tokenizer::from_gguf(gpt2)->caveat(), "");
  const std::string path = test::scratch_path("llama-bpe-vocab.gguf");
  {
    GgufWriter writer(path);
    for (const auto& [key, value] : gpt2.metadata())
      if (key != "tokenizer.ggml.pre") writer.add_value(key, value);
    writer.add_string("tokenizer.ggml.pre", "llama-bpe");
    writer.finish();
  }
  EXPECT_NE(Tokenizer::from_gguf(GgufFile::open(path))->caveat().find("llama-bpe"), std::string::npos);
}

TEST(Tokenizer, RejectsFilesWithoutATokenizer) {
  test::write_bytes(test::scratch_path("empty.gguf"), {'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                       0, 0, 0, 0, 0, 0, 0, 0});
  const GgufFile file = GgufFile::open(test::scratch_path("empty.gguf"));
  EXPECT_THROW(Tokenizer::from_gguf(file), Error);
}

}  // namespace
}  // namespace fi
