// Tokenizers against the independent test vectors of ../shared/data/vocab, llama.cpp's BOS and
// end-of-generation rules, special tokens in text, and malformed input.
#include <algorithm>
#include <fstream>
#include <functional>
#include <sstream>

#include "host/text/tokenizer.h"
#include "host/text/unicode.h"
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

std::string vocab_path(const std::string& vocab) {
  return test::shared_data() + "/vocab/ggml-vocab-" + vocab + ".gguf";
}

std::unique_ptr<Tokenizer> load(const std::string& vocab) { return Tokenizer::from_gguf(GgufFile::open(vocab_path(vocab))); }

// A copy of a shared vocabulary's metadata with keys left out, token texts replaced and keys added.
struct VocabEdit {
  std::vector<std::string> drop;
  std::vector<std::pair<int32_t, std::string>> rename;
  std::function<void(GgufWriter&)> add;
};
std::unique_ptr<Tokenizer> load_edited(const std::string& vocab, const std::string& name, const VocabEdit& edit) {
  const GgufFile source = GgufFile::open(vocab_path(vocab));
  const std::string path = test::scratch_path(name + ".gguf");
  {
    GgufWriter writer(path);
    for (auto [key, value] : source.metadata()) {
      if (std::find(edit.drop.begin(), edit.drop.end(), key) != edit.drop.end()) continue;
      if (key == "tokenizer.ggml.tokens")
        for (const auto& [id, text] : edit.rename) value.strings.at(static_cast<size_t>(id)) = text;
      writer.add_value(key, value);
    }
    if (edit.add) edit.add(writer);
    writer.finish();
  }
  return Tokenizer::from_gguf(GgufFile::open(path));
}

std::string load_error(const std::string& vocab, const std::string& name, const VocabEdit& edit) {
  try {
    load_edited(vocab, name, edit);
  } catch (const Error& error) {
    return error.what();
  }
  return "(loaded)";
}

void check_vectors(const std::string& vocab) {
  const std::string base = vocab_path(vocab);
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

TEST(Tokenizer, Llama3Vectors) {
  FI_REQUIRE_SHARED_DATA();
  check_vectors("llama3");
}

TEST(Tokenizer, Qwen3Vectors) {
  FI_REQUIRE_SHARED_DATA();
  check_vectors("qwen3");
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

TEST(Tokenizer, RefusesPreTokenizersItDoesNotReproduce) {
  FI_REQUIRE_SHARED_DATA();
  for (const char* name : {"default", "falcon", "deepseek-llm"}) {
    const std::string error = load_error("gpt-2", std::string("pre-") + name,
                                         {{"tokenizer.ggml.pre"}, {}, [&](GgufWriter& writer) {
                                            writer.add_string("tokenizer.ggml.pre", name);
                                          }});
    EXPECT_NE(error.find(std::string("'") + name + "'"), std::string::npos) << error;
    EXPECT_NE(error.find("gpt-2, llama-bpe, qwen2"), std::string::npos) << error;
  }
  const std::string missing = load_error("gpt-2", "pre-missing", {{"tokenizer.ggml.pre"}, {}, {}});
  EXPECT_NE(missing.find("tokenizer.ggml.pre is missing"), std::string::npos) << missing;
  for (const char* vocab : {"llama-spm", "gpt-2", "llama3", "qwen3", "phi-3"}) EXPECT_NO_THROW(load(vocab)) << vocab;
}

TEST(Tokenizer, AddsBosWhereTheFileSaysElseAsLlamaCppDefaults) {
  FI_REQUIRE_SHARED_DATA();
  auto add_bos = [](bool value) { return [value](GgufWriter& writer) { writer.add_bool("tokenizer.ggml.add_bos_token", value); }; };
  const std::vector<std::string> no_key = {"tokenizer.ggml.add_bos_token"};
  // GPT-2's file has no add_bos_token: byte-level BPE adds none.
  const auto gpt2 = load("gpt-2");
  EXPECT_FALSE(gpt2->adds_bos());
  EXPECT_EQ(gpt2->encode("Hello", true, false), std::vector<int32_t>{15496});
  EXPECT_TRUE(load_edited("gpt-2", "gpt2-bos", {{}, {}, add_bos(true)})->adds_bos());
  // Llama 3 says true; without the key llama.cpp's llama-bpe default is true as well.
  const auto llama3 = load("llama3");
  EXPECT_TRUE(llama3->adds_bos());
  EXPECT_EQ(llama3->encode("Hello", true, false), (std::vector<int32_t>{128000, 9906}));
  EXPECT_TRUE(load_edited("llama3", "llama3-no-bos-key", {no_key, {}, {}})->adds_bos());
  EXPECT_FALSE(load_edited("llama3", "llama3-no-bos", {no_key, {}, add_bos(false)})->adds_bos());
  EXPECT_FALSE(load("qwen3")->adds_bos());
  EXPECT_FALSE(load_edited("qwen3", "qwen3-no-bos-key", {no_key, {}, {}})->adds_bos());
  // SentencePiece-style: true unless the file says otherwise.
  EXPECT_TRUE(load_edited("llama-spm", "spm-no-bos-key", {no_key, {}, {}})->adds_bos());
  EXPECT_FALSE(load_edited("llama-spm", "spm-no-bos", {no_key, {}, add_bos(false)})->adds_bos());
  // Asked to add a BOS it does not have: refused, as llama.cpp does.
  EXPECT_NE(load_error("qwen3", "qwen3-bos-without-id", {no_key, {}, add_bos(true)}).find("bos_token_id"),
            std::string::npos);
}

TEST(Tokenizer, EndOfGenerationAsLlamaCpp) {
  FI_REQUIRE_SHARED_DATA();
  const auto llama3 = load("llama3");
  // <|end_of_text|> (eos) and <|eot_id|>; 128008 is still <|reserved_special_token_4|> in Llama 3.0.
  EXPECT_EQ(llama3->end_of_generation_tokens(), (std::vector<int32_t>{128001, 128009}));
  EXPECT_TRUE(llama3->is_end_of_generation(128009));
  EXPECT_TRUE(llama3->is_end_of_generation(128001));
  for (int32_t ordinary : {0, 9906, 128000, 128006, 128008, -1, llama3->size()})
    EXPECT_FALSE(llama3->is_end_of_generation(ordinary)) << ordinary;
  // Llama 3.1 names 128008 <|eom_id|>: an end by its text alone, or by tokenizer.ggml.eom_token_id.
  const auto llama31 = load_edited("llama3", "llama31", {{}, {{128008, "<|eom_id|>"}}, {}});
  EXPECT_EQ(llama31->end_of_generation_tokens(), (std::vector<int32_t>{128001, 128008, 128009}));
  const auto eom_key = load_edited("llama3", "llama3-eom-key", {{}, {}, [](GgufWriter& writer) {
                                      writer.add_uint32("tokenizer.ggml.eom_token_id", 128008);
                                    }});
  EXPECT_TRUE(eom_key->is_end_of_generation(128008));
  // A Normal token with an end-of-turn text ends generation too and becomes a control token.
  const auto renamed = load_edited("llama3", "llama3-renamed-eot", {{}, {{9906, "<|im_end|>"}}, {}});
  EXPECT_TRUE(renamed->is_end_of_generation(9906));
  EXPECT_EQ(renamed->kind(9906), TokenKind::Control);

  // Qwen3: <|endoftext|>, <|im_end|> (eos), the FIM pad, repository and file separator tokens, and
  // 128247, an ordinary merge that happens to be spelled </s> (llama.cpp matches the spelling).
  const auto qwen3 = load("qwen3");
  EXPECT_EQ(qwen3->end_of_generation_tokens(),
            (std::vector<int32_t>{128247, 151643, 151645, 151662, 151663, 151664}));
  for (int32_t ordinary : {151644, 151659, 151667, 872, 151669}) EXPECT_FALSE(qwen3->is_end_of_generation(ordinary));

  EXPECT_EQ(load("gpt-2")->end_of_generation_tokens(), std::vector<int32_t>{50256});
  EXPECT_EQ(load("llama-spm")->end_of_generation_tokens(), std::vector<int32_t>{2});
  // Phi-3: <|endoftext|> (eos), <|end|>, and </s>, which the file types user-defined.
  const auto phi3 = load("phi-3");
  EXPECT_EQ(phi3->end_of_generation_tokens(), (std::vector<int32_t>{2, 32000, 32007}));
  EXPECT_EQ(phi3->kind(2), TokenKind::Control);
}

TEST(Tokenizer, SpecialTokensInTextAsLlamaCpp) {
  FI_REQUIRE_SHARED_DATA();
  const auto qwen3 = load("qwen3");
  const std::string text = "<|im_start|>user";
  std::vector<int32_t> expected = {151644};
  for (int32_t id : qwen3->encode("user", false, false)) expected.push_back(id);
  EXPECT_EQ(qwen3->encode(text, false, true), expected);
  // Without parse_special a control token's text is just text.
  const auto literal = qwen3->encode(text, false, false);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 151644), 0);
  EXPECT_GT(literal.size(), 2u);
  EXPECT_EQ(qwen3->decode(literal), text);
  // User-defined tokens (<think> is one) are always recognised.
  EXPECT_EQ(qwen3->encode("<think>x</think>", false, false).front(), 151667);
  EXPECT_EQ(qwen3->encode("<think>x</think>", false, false).back(), 151668);
  const auto llama3 = load("llama3");
  EXPECT_EQ(llama3->encode("<|start_header_id|>user<|end_header_id|>", false, true),
            (std::vector<int32_t>{128006, 882, 128007}));
  // Each special token, longest first, is cut out of all the text before the next is looked for:
  // with "\x01\x02" and "\x02\x03\x04", "\x01\x02\x03\x04" is "\x01" and then the longer token.
  const auto overlapping =
      load_edited("qwen3", "qwen3-overlapping", {{}, {{151657, "\x01\x02"}, {151658, "\x02\x03\x04"}}, {}});
  std::vector<int32_t> cut = overlapping->encode("\x01", false, false);
  cut.push_back(151658);
  EXPECT_EQ(overlapping->encode("\x01\x02\x03\x04", false, false), cut);
}

TEST(Tokenizer, MalformedAndLongTextTokenizesWithoutFailing) {
  FI_REQUIRE_SHARED_DATA();
  const std::vector<std::string> malformed = {
      "\xff", "a\xff" "b", "\x80\x80", "\xe2\x82", "caf\xc3", "\xc0\x80 overlong", "\xed\xa0\x80 surrogate",
      "\xf4\x90\x80\x80 beyond", "\xf8\x88\x80\x80\x80", std::string("nul\0inside", 10), "<|im_start|\xff>"};
  for (const char* vocab : {"llama-spm", "gpt-2", "llama3", "qwen3", "phi-3"}) {
    const auto tokenizer = load(vocab);
    for (const std::string& text : malformed)
      for (bool special : {false, true})
        for (int32_t id : tokenizer->encode(text, true, special)) {
          EXPECT_GE(id, 0) << vocab;
          EXPECT_LT(id, tokenizer->size()) << vocab;
        }
  }
  // Byte-level BPE reads an invalid byte as U+FFFD, as llama.cpp does.
  for (const char* vocab : {"gpt-2", "llama3", "qwen3"}) {
    const auto tokenizer = load(vocab);
    EXPECT_EQ(tokenizer->encode("a\xff" "b\xe2\x82", false, false),
              tokenizer->encode("a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd", false, false))
        << vocab;
  }
  // SentencePiece falls back to byte tokens.
  const auto spm = load("llama-spm");
  EXPECT_EQ(spm->encode("\xff", false, false).back(), 3 + 0xFF);

  // Long runs of one character class, one pre-token each.
  for (const char* vocab : {"gpt-2", "llama3", "qwen3"}) {
    const auto tokenizer = load(vocab);
    for (const std::string& run : {std::string(300000, ' '), std::string(300000, 'a'), std::string(300000, '!'),
                                   std::string(300000, '7'), std::string(100000, '\n') + std::string(100000, '\t')})
      EXPECT_EQ(tokenizer->decode(tokenizer->encode(run, false, false)), run) << vocab;
  }
}

TEST(Tokenizer, RefusesInconsistentVocabularies) {
  FI_REQUIRE_SHARED_DATA();
  auto refusal = [](const std::string& name, const VocabEdit& edit) { return load_error("gpt-2", name, edit); };
  EXPECT_NE(refusal("duplicate", {{}, {{100, "\xc4\xa0the"}}, {}}).find("same text"), std::string::npos);
  EXPECT_NE(refusal("bos-outside", {{"tokenizer.ggml.bos_token_id"}, {}, [](GgufWriter& writer) {
                                       writer.add_uint32("tokenizer.ggml.bos_token_id", 50257);
                                     }}).find("outside the vocabulary"),
            std::string::npos);
  EXPECT_NE(refusal("types-short", {{"tokenizer.ggml.token_type"}, {}, [](GgufWriter& writer) {
                                       writer.add_int32_array("tokenizer.ggml.token_type", std::vector<int32_t>(10, 1));
                                     }}).find("10 token types"),
            std::string::npos);
  EXPECT_NE(refusal("merge-without-space", {{"tokenizer.ggml.merges"}, {}, [](GgufWriter& writer) {
                                               writer.add_string_array("tokenizer.ggml.merges", {"ab"});
                                             }}).find("malformed merge"),
            std::string::npos);
  // An empty token text would match anywhere; llama.cpp names it instead.
  EXPECT_EQ(load_edited("gpt-2", "empty-token", {{}, {{100, ""}}, {}})->text(100), "[EMPTY_100]");
}

TEST(Tokenizer, RejectsFilesWithoutATokenizer) {
  test::write_bytes(test::scratch_path("empty.gguf"), {'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                       0, 0, 0, 0, 0, 0, 0, 0});
  const GgufFile file = GgufFile::open(test::scratch_path("empty.gguf"));
  EXPECT_THROW(Tokenizer::from_gguf(file), Error);
}

}  // namespace
TEST(Unicode, LetterAndNumberCategories) {
  for (uint32_t letter : {0x61u, 0x5Au, 0xE9u, 0x3B1u, 0x436u, 0x4E2Du, 0x10400u})
    EXPECT_TRUE(is_letter(letter)) << std::hex << letter;
  for (uint32_t other : {0x31u, 0x20u, 0x2Du, 0x1F600u, 0xD800u, 0x110000u}) EXPECT_FALSE(is_letter(other)) << std::hex << other;
  for (uint32_t number : {0x30u, 0x39u, 0x663u, 0xBDu, 0x2167u}) EXPECT_TRUE(is_number(number)) << std::hex << number;
  for (uint32_t other : {0x61u, 0x2Eu, 0x4E2Du}) EXPECT_FALSE(is_number(other)) << std::hex << other;
}

}  // namespace fi
