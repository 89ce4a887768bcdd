// The flexinfer executable: outputs of each command, and one clear line plus a non-zero exit for
// every bad input.
#include <nlohmann/json.hpp>

#include <algorithm>

#include "test_support.h"

namespace fi {
namespace {

std::string last_line(const std::string& text) {
  const size_t end = text.find_last_not_of('\n');
  if (end == std::string::npos) return "";
  const size_t begin = text.rfind('\n', end);
  return text.substr(begin == std::string::npos ? 0 : begin + 1, end - (begin == std::string::npos ? 0 : begin + 1) + 1);
}

void expect_clean_failure(const std::vector<std::string>& arguments, const std::string& fragment) {
  const test::CommandResult result = test::run_flexinfer(arguments);
  EXPECT_TRUE(result.exit_code == 1 || result.exit_code == 2) << "exit " << result.exit_code << " for " << arguments[0];
  EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << "one line expected: " << result.err;
  EXPECT_NE(result.err.find(fragment), std::string::npos) << result.err;
}

std::string tiny_model() {
  return test::generated_model("cli_tiny", {64, 2, 4, 2, 96, 256, 0, 10000.0, false}, WeightScheme::Q8_0);
}

TEST(Cli, GenerateStreamsTextAndSummarises) {
  const test::CommandResult result =
      test::run_flexinfer({"generate", "-m", tiny_model(), "-p", "hello", "-n", "16", "--temp", "0", "-t", "2"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_FALSE(result.out.empty());
  EXPECT_NE(result.err.find("generated"), std::string::npos);
  EXPECT_NE(result.err.find("tok/s"), std::string::npos);
  const test::CommandResult again =
      test::run_flexinfer({"generate", "-m", tiny_model(), "-p", "hello", "-n", "16", "--temp", "0", "-t", "1"});
  EXPECT_EQ(again.out, result.out) << "greedy output must not depend on the thread count";
}

TEST(Cli, TokenizeEndsWithJsonIds) {
  const test::CommandResult result = test::run_flexinfer({"tokenize", "-m", tiny_model(), "-p", "ab"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto ids = nlohmann::json::parse(last_line(result.out)).get<std::vector<int>>();
  // BOS, then the space marker, then the byte tokens of 'a' and 'b' (3 + byte value).
  EXPECT_EQ(ids, (std::vector<int>{1, 259, 3 + 'a', 3 + 'b'}));
  const test::CommandResult no_bos = test::run_flexinfer({"tokenize", "-m", tiny_model(), "-p", "<s>", "--no-bos", "--parse-special"});
  EXPECT_EQ(nlohmann::json::parse(last_line(no_bos.out)).get<std::vector<int>>(), (std::vector<int>{1}));
}

TEST(Cli, LogitsWritesOneRowPerPosition) {
  const std::string output = test::scratch_path("logits.f32");
  const test::CommandResult result = test::run_flexinfer({"logits", "-m", tiny_model(), "-p", "abc", "-o", output});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto ids = nlohmann::json::parse(last_line(result.out)).get<std::vector<int>>();
  EXPECT_EQ(ids.size(), 5u);  // BOS, space marker, a, b, c
  EXPECT_EQ(test::read_bytes(output).size(), ids.size() * 260 * sizeof(float));
}

TEST(Cli, InspectShowsTensorsAndLayers) {
  const test::CommandResult result = test::run_flexinfer({"inspect", tiny_model()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("blk.1.ffn_down.weight"), std::string::npos);
  EXPECT_NE(result.out.find("bytes per layer"), std::string::npos);
  EXPECT_NE(result.out.find("llama.block_count"), std::string::npos);
}

TEST(Cli, MakeModelPresetsAreLoadable) {
  const std::string path = test::scratch_path("preset.gguf");
  const test::CommandResult made =
      test::run_flexinfer({"make-model", "--preset", "tiny", "--type", "q4_k", "--byte-vocab", "-o", path});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const test::CommandResult info = test::run_flexinfer({"inspect", path});
  EXPECT_NE(info.out.find("Q4_K"), std::string::npos);
  EXPECT_NE(info.out.find("Q6_K"), std::string::npos) << "output.weight is kept at higher precision";
  const test::CommandResult run = test::run_flexinfer({"generate", "-m", path, "-n", "4", "--seed", "3"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
}

TEST(Cli, BadInputIsOneClearLine) {
  const std::string model = tiny_model();
  expect_clean_failure({"generate", "-m", model, "--bogus"}, "unknown option '--bogus'");
  expect_clean_failure({"generate", "-m", model, "-n"}, "needs a value");
  expect_clean_failure({"generate", "-m", model, "-n", "ten"}, "needs an integer");
  expect_clean_failure({"generate", "-m", model, "--temp", "-1"}, "outside");
  expect_clean_failure({"generate", "-p", "x"}, "'-m' is required");
  expect_clean_failure({"generate", "-m", test::scratch_path("missing.gguf")}, "cannot open");
  expect_clean_failure({"generate", "-m", model, "-n", "1000000"}, "exceed the context");
  // 4 layers x 1024 KV values x 2^24 positions: a 256 GiB KV cache.
  const std::string wide = test::generated_model("cli_wide_kv", {1024, 4, 8, 8, 64, 256, 0, 10000.0, false}, WeightScheme::Q8_0);
  expect_clean_failure({"generate", "-m", wide, "--ctx", "16777216"}, "KV cache");
  expect_clean_failure({"frobnicate"}, "unknown command");
  expect_clean_failure({"make-model", "--preset", "3b", "--type", "f16", "--byte-vocab", "-o", "x"}, "unknown preset");
  expect_clean_failure({"make-model", "--preset", "tiny", "--type", "q2_k", "--byte-vocab", "-o", "x"}, "unknown type");
  expect_clean_failure({"inspect"}, "expected one GGUF file");

  std::vector<uint8_t> bytes = test::read_bytes(model);
  bytes.resize(bytes.size() / 2);
  const std::string truncated = test::scratch_path("truncated.gguf");
  test::write_bytes(truncated, bytes);
  expect_clean_failure({"generate", "-m", truncated}, "extends past the end");
  expect_clean_failure({"inspect", truncated}, "extends past the end");

  bytes = test::read_bytes(model);
  bytes[0] = 'X';
  const std::string bad_magic = test::scratch_path("bad-magic.gguf");
  test::write_bytes(bad_magic, bytes);
  expect_clean_failure({"logits", "-m", bad_magic, "-p", "x", "-o", test::scratch_path("l.f32")}, "bad magic");
}

TEST(Cli, VocabOnlyFilesTokenizeButDoNotGenerate) {
  FI_REQUIRE_SHARED_DATA();
  const std::string vocab = test::shared_data() + "/vocab/ggml-vocab-gpt-2.gguf";
  const test::CommandResult ok = test::run_flexinfer({"tokenize", "-m", vocab, "-p", "Hello world"});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(nlohmann::json::parse(last_line(ok.out)).get<std::vector<int>>(), (std::vector<int>{15496, 995}));
  expect_clean_failure({"generate", "-m", vocab}, "unsupported architecture 'gpt2'");
}

}  // namespace
}  // namespace fi
