// The flexinfer executable: outputs of each command, and one clear line plus a non-zero exit for
// every bad input.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>

#include "io/error.h"
#include "host/kernels/thread_pool.h"
#include "io/file.h"
#include "io/gguf.h"
#include "test_support.h"
#include "tools/model_maker.h"

namespace fi {
namespace {

std::string last_line(const std::string& text) {
  const size_t end = text.find_last_not_of('\n');
  if (end == std::string::npos) return "";
  const size_t begin = text.rfind('\n', end);
  return text.substr(begin == std::string::npos ? 0 : begin + 1, end - (begin == std::string::npos ? 0 : begin + 1) + 1);
}

// Exit 1 (a failure) or 2 (a usage error), and one error line, the last one on stderr (a run that
// started may have said where its weights live before failing).
void expect_clean_failure(const std::vector<std::string>& arguments, const std::string& fragment) {
  const test::CommandResult result = test::run_flexinfer(arguments);
  EXPECT_TRUE(result.exit_code == 1 || result.exit_code == 2) << "exit " << result.exit_code << " for " << arguments[0];
  size_t errors = 0;
  for (size_t at = result.err.find("flexinfer: error:"); at != std::string::npos; at = result.err.find("flexinfer: error:", at + 1))
    ++errors;
  EXPECT_EQ(errors, 1u) << "one error line expected: " << result.err;
  const size_t last_line = result.err.rfind('\n', result.err.size() - 2);
  const std::string last = result.err.substr(last_line == std::string::npos ? 0 : last_line + 1);
  EXPECT_EQ(last.rfind("flexinfer: error:", 0), 0u) << "the error is the last line: " << result.err;
  EXPECT_NE(last.find(fragment), std::string::npos) << result.err;
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

TEST(Cli, ParseSpecialMapsSpecialTokensInPrompts) {
  const std::string output = test::scratch_path("logits-special.f32");
  const test::CommandResult literal = test::run_flexinfer({"logits", "-m", tiny_model(), "-p", "<s>ab", "-o", output});
  const test::CommandResult special =
      test::run_flexinfer({"logits", "-m", tiny_model(), "-p", "<s>ab", "-o", output, "--parse-special"});
  ASSERT_EQ(special.exit_code, 0) << special.err;
  const auto literal_ids = nlohmann::json::parse(last_line(literal.out)).get<std::vector<int>>();
  const auto special_ids = nlohmann::json::parse(last_line(special.out)).get<std::vector<int>>();
  EXPECT_EQ(special_ids.at(1), 1) << "<s> is the BOS token";
  EXPECT_EQ(std::count(literal_ids.begin(), literal_ids.end(), 1), 1) << "taken literally, <s> is three bytes";
  const test::CommandResult generated =
      test::run_flexinfer({"generate", "-m", tiny_model(), "-p", "<s>ab", "-n", "2", "--parse-special", "--temp", "0"});
  ASSERT_EQ(generated.exit_code, 0) << generated.err;
  EXPECT_NE(generated.err.find(std::to_string(special_ids.size()) + " tokens"), std::string::npos) << generated.err;
}

// Each family with its real tokenizer, from make-model to generated text: a chat-formatted prompt
// with special tokens, under a budget that streams.
TEST(Cli, NewerFamiliesGenerateWithTheirTokenizers) {
  FI_REQUIRE_SHARED_DATA();
  const std::string vocab_dir = test::shared_data() + "/vocab/";
  const struct {
    const char* preset;
    const char* vocab;
    const char* prompt;
  } cases[] = {
      {"tiny-llama3", "ggml-vocab-llama3.gguf",
       "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
      {"tiny-qwen3", "ggml-vocab-qwen3.gguf", "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"},
      {"tiny-qwen2", "ggml-vocab-qwen3.gguf", "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.preset);
    const std::string path = test::scratch_path(std::string(c.preset) + "-real-vocab.gguf");
    const test::CommandResult made = test::run_flexinfer(
        {"make-model", "--preset", c.preset, "--type", "q4_0", "--vocab", vocab_dir + c.vocab, "-o", path});
    ASSERT_EQ(made.exit_code, 0) << made.err;
    const test::CommandResult tokens = test::run_flexinfer({"tokenize", "-m", path, "-p", c.prompt, "--parse-special"});
    ASSERT_EQ(tokens.exit_code, 0) << tokens.err;
    const auto ids = nlohmann::json::parse(last_line(tokens.out)).get<std::vector<int>>();
    EXPECT_LT(ids.size(), 20u) << "the special tokens are single ids";
    const std::string plan_json = test::scratch_path("family-plan.json");
    ASSERT_EQ(test::run_flexinfer({"plan", "-m", path, "--ctx", "256", "--json", plan_json}).exit_code, 0);
    const auto minimum = nlohmann::json::parse(test::read_bytes_as_text(plan_json))["host"]["minimum_bytes"].get<uint64_t>();
    const test::CommandResult run = test::run_flexinfer({"generate", "-m", path, "-p", c.prompt, "--parse-special", "-n", "4",
                                                         "--temp", "0", "--host-mem", std::to_string(minimum), "--ctx", "256"});
    EXPECT_EQ(run.exit_code, 0) << run.err;
    EXPECT_NE(run.err.find("streamed per token"), std::string::npos) << run.err;
  }
}

// The command line llama.cpp users know: its names and aliases, -p - and -f - from standard
// input, -n=3, -n -1, -s -1, exit statuses 2 for usage errors and 1 for failures, suggestions.
TEST(Cli, LlamaCppNamesAndConventions) {
  const std::string model = tiny_model();
  auto ids_of = [](const test::CommandResult& result) { return nlohmann::json::parse(last_line(result.out)).get<std::vector<int>>(); };
  const std::vector<int> direct = ids_of(test::run_flexinfer({"tokenize", "-m", model, "-p", "a\nb"}));
  const std::vector<int> literal = ids_of(test::run_flexinfer({"tokenize", "-m", model, "-p", "a\\nb"}));
  const std::vector<int> escaped = ids_of(test::run_flexinfer({"tokenize", "-m", model, "-p", "a\\nb", "-e"}));
  EXPECT_EQ(escaped, direct) << "-e turns backslash-n into a newline";
  EXPECT_EQ(literal.size(), direct.size() + 1) << "without -e it is a backslash and an n";
  test::RunOptions piped;
  piped.input = "a\nb";
  EXPECT_EQ(ids_of(test::run_flexinfer({"tokenize", "-m", model, "-p", "-"}, piped)), direct) << "-p - reads standard input";
  EXPECT_EQ(ids_of(test::run_flexinfer({"tokenize", "-m", model, "-f", "-"}, piped)), direct) << "-f - reads standard input";
  const std::string file = test::scratch_path("prompt.txt");
  test::write_bytes(file, {'a', '\n', 'b'});
  EXPECT_EQ(ids_of(test::run_flexinfer({"tokenize", "-m", model, "-f", file})), direct);

  const test::CommandResult three = test::run_flexinfer({"generate", "-m", model, "-p", "x", "-n=3", "--temperature", "0", "-s", "-1", "-c", "64"});
  ASSERT_EQ(three.exit_code, 0) << three.err;
  EXPECT_NE(three.err.find("generated 3 tokens"), std::string::npos) << three.err;
  const test::CommandResult until_full = test::run_flexinfer({"generate", "-m", model, "-p", "x", "-n", "-1", "--ctx-size", "24", "--ignore-eos"});
  ASSERT_EQ(until_full.exit_code, 0) << until_full.err;
  EXPECT_NE(until_full.err.find("prompt 3 tokens"), std::string::npos) << until_full.err;
  EXPECT_NE(until_full.err.find("generated 21 tokens"), std::string::npos) << "-n -1 fills the context: " << until_full.err;

  const test::CommandResult typo = test::run_flexinfer({"generate", "-m", model, "--tmep", "0"});
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_NE(typo.err.find("unknown option '--tmep' (did you mean '--temp'?)"), std::string::npos) << typo.err;
  const test::CommandResult layers = test::run_flexinfer({"generate", "-m", model, "-ngl", "99"});
  EXPECT_EQ(layers.exit_code, 2);
  EXPECT_NE(layers.err.find("--gpu-mem"), std::string::npos) << layers.err;
  for (const std::vector<std::string>& placement : {std::vector<std::string>{"-ot", "exps=CPU"}, {"--override-tensor=exps=CPU"},
                                                   {"--cpu-moe"}, {"--n-cpu-moe", "20"}, {"-ncmoe=4"}}) {
    std::vector<std::string> arguments{"generate", "-m", model};
    arguments.insert(arguments.end(), placement.begin(), placement.end());
    const test::CommandResult by_hand = test::run_flexinfer(arguments);
    EXPECT_EQ(by_hand.exit_code, 2) << placement[0];
    EXPECT_NE(by_hand.err.find("'" + placement[0] + "' is llama.cpp's placement of tensors by hand"), std::string::npos)
        << by_hand.err;
  }
  // Those words as another option's value are that value: a prompt.
  for (const char* prompt : {"--cpu-moe", "-ngl", "-ot"}) {
    const test::CommandResult as_prompt = test::run_flexinfer({"generate", "-m", model, "-p", prompt, "-n", "2"});
    EXPECT_EQ(as_prompt.exit_code, 0) << prompt << ": " << as_prompt.err;
  }
  // A repeated option takes its last value (scripts append overrides), a repeatable one every value.
  const test::CommandResult repeated =
      test::run_flexinfer({"generate", "-m", model, "-p", "x", "-n", "7", "--temp", "0", "-n", "2", "--ignore-eos"});
  ASSERT_EQ(repeated.exit_code, 0) << repeated.err;
  EXPECT_NE(repeated.err.find("generated 2 tokens"), std::string::npos) << repeated.err;
  const std::string typed = test::scratch_path("two-overrides.gguf");
  const test::CommandResult overrides =
      test::run_flexinfer({"make-model", "--preset", "tiny-qwen3moe", "--type", "q4_0", "--byte-vocab", "--tensor-type",
                           "ffn_down_exps=q8_0", "--tensor-type", "attn_q=q8_0", "-o", typed});
  ASSERT_EQ(overrides.exit_code, 0) << overrides.err;
  const std::string tensors = test::run_flexinfer({"inspect", typed}).out;
  for (const char* name : {"blk.0.ffn_down_exps.weight", "blk.0.attn_q.weight"}) {
    const size_t at = tensors.find(name);
    ASSERT_NE(at, std::string::npos) << name;
    EXPECT_NE(tensors.substr(at, tensors.find('\n', at) - at).find("Q8_0"), std::string::npos) << name;
  }
  EXPECT_EQ(test::run_flexinfer({"generate", "-m", model, "-n", "ten"}).exit_code, 2) << "a malformed value is a usage error";
  // ... also when a later value of the same option is good.
  const std::pair<std::vector<std::string>, std::string> earlier_values_bad[] = {
      {{"-n", "ten", "-n", "2"}, "needs an integer, got 'ten'"},
      {{"--temp", "warm", "--temp", "0"}, "needs a number, got 'warm'"},
      {{"--host-mem", "lots", "--host-mem", "1G"}, "'lots' is not a memory size"},
      {{"--io", "aio", "--io", "pread"}, "--io: unknown backend 'aio'"},
      {{"--expert-policy", "lru", "--expert-policy", "recency"}, "--expert-policy: unknown policy 'lru'"},
      {{"--expert-speculation", "maybe", "--expert-speculation", "on"}, "unknown setting 'maybe'"},
      {{"--log-level", "loud", "--log-level", "info"}, "--log-level 'loud'"}};
  for (const auto& [options, message] : earlier_values_bad) {
    std::vector<std::string> arguments = {"generate", "-m", model};
    arguments.insert(arguments.end(), options.begin(), options.end());
    expect_clean_failure(arguments, message);
    EXPECT_EQ(test::run_flexinfer(arguments).exit_code, 2) << message << ": a usage error";
  }
  const std::pair<std::vector<std::string>, std::string> other_commands_earlier_values_bad[] = {
      {{"make-model", "--preset", "3b", "--preset", "tiny", "--type", "f16", "--byte-vocab", "-o", "x"}, "unknown preset '3b'"},
      {{"make-model", "--preset", "tiny", "--type", "q9", "--type", "f16", "--byte-vocab", "-o", "x"}, "unknown type 'q9'"},
      {{"make-model", "--preset", "tiny", "--arch", "gpt9", "--arch", "llama", "--type", "f16", "--byte-vocab", "-o", "x"},
       "unknown architecture 'gpt9'"},
      {{"chat", "-m", model, "--chat-format", "nope", "--chat-format", "chatml"}, "unknown chat format 'nope'"},
      {{"serve", "-m", model, "--chat-format", "nope", "--chat-format", "chatml"}, "unknown chat format 'nope'"},
      {{"template", "--file", "x.jinja", "--messages", "m.json", "--now", "noon", "--now", "2024-07-26 00:00:00"},
       "'noon' is not 'YYYY-MM-DD HH:MM:SS'"}};
  for (const auto& [arguments, message] : other_commands_earlier_values_bad) {
    expect_clean_failure(arguments, message);
    EXPECT_EQ(test::run_flexinfer(arguments).exit_code, 2) << message << ": a usage error";
  }
  EXPECT_EQ(test::run_flexinfer({"generate", "-m", test::scratch_path("missing.gguf")}).exit_code, 1) << "a failure";
  const test::CommandResult version = test::run_flexinfer({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out.rfind("flexinfer ", 0), 0u) << version.out;
}

TEST(Cli, LogLevelsAndLogFile) {
  const std::string model = tiny_model();
  const test::CommandResult quiet = test::run_flexinfer({"generate", "-m", model, "-p", "x", "-n", "2", "--log-level", "warning"});
  ASSERT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(std::count(quiet.err.begin(), quiet.err.end(), '\n'), 1) << "only the summary: " << quiet.err;
  const std::string log = test::scratch_path("run.log");
  const test::CommandResult logged =
      test::run_flexinfer({"generate", "-m", model, "-p", "x", "-n", "2", "--log-file", log});
  ASSERT_EQ(logged.exit_code, 0) << logged.err;
  const std::string text = test::read_bytes_as_text(log);
  EXPECT_NE(text.find("every weight in RAM"), std::string::npos) << text;
  const test::CommandResult bad = test::run_flexinfer({"generate", "-m", model, "--log-level", "loud"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--log-level 'loud'"), std::string::npos) << bad.err;
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

// make-model writes through FILE.partial: a failure or an interrupt leaves neither a truncated model
// nor the unfinished file, and a file already at the name stays as it was until the new one is whole.
TEST(Cli, MakeModelNeverLeavesAnUnfinishedFile) {
  const std::string path = test::scratch_path("unfinished.gguf");
  test::write_bytes(path, {'o', 'l', 'd'});
  MakeModelOptions options;
  options.shape = *find_preset("tiny");
  options.scheme = WeightScheme::Q4_K;
  options.output_path = path;
  ThreadPool pool(1);
  std::atomic<bool> stop{true};
  options.stop = &stop;
  EXPECT_THROW(make_model(options, pool), Error);
  EXPECT_EQ(test::read_bytes_as_text(path), "old");
  EXPECT_FALSE(std::filesystem::exists(path + kUnfinishedSuffix));

  stop.store(false);
  options.tensor_types = {{Role::FfnGateExps, TensorType::Q8_0}};  // a dense model: fails once the file is open
  EXPECT_THROW(make_model(options, pool), Error);
  EXPECT_EQ(test::read_bytes_as_text(path), "old");
  EXPECT_FALSE(std::filesystem::exists(path + kUnfinishedSuffix));

  // An earlier run's unfinished file, here a link: removed, what it points to left alone.
  options.tensor_types.clear();
  const std::string elsewhere = test::scratch_path("unfinished-link-target");
  test::write_bytes(elsewhere, {'k', 'e', 'p', 't'});
  std::filesystem::remove(path + kUnfinishedSuffix);
  std::filesystem::create_symlink(elsewhere, path + kUnfinishedSuffix);
  const uint64_t bytes = make_model(options, pool);
  EXPECT_EQ(std::filesystem::file_size(path), bytes);
  EXPECT_FALSE(std::filesystem::exists(path + kUnfinishedSuffix));
  EXPECT_EQ(test::read_bytes_as_text(elsewhere), "kept");
  EXPECT_NO_THROW(GgufFile::open(path));

  // An unfinished file no run holds any more (its run died) is replaced, not emptied (here it is
  // another file's second name); one a run holds is not touched: the second writer is refused.
  const std::string other_name = test::scratch_path("unfinished-other-name");
  test::write_bytes(other_name, {'s', 't', 'a', 'l', 'e'});
  std::filesystem::create_hard_link(other_name, path + kUnfinishedSuffix);
  {
    UnfinishedFile first(path);
    EXPECT_EQ(std::filesystem::file_size(path + kUnfinishedSuffix), 0u);
    test::write_bytes(path + kUnfinishedSuffix, {'m', 'i', 'n', 'e'});
    EXPECT_THROW(UnfinishedFile second(path), Error);
    EXPECT_THROW(make_model(options, pool), Error);
    EXPECT_EQ(test::read_bytes_as_text(path + kUnfinishedSuffix), "mine");
  }
  EXPECT_FALSE(std::filesystem::exists(path + kUnfinishedSuffix));
  EXPECT_EQ(test::read_bytes_as_text(other_name), "stale");
  EXPECT_NO_THROW(GgufFile::open(path));

  // A path that is no file to replace is refused before anything is written.
  options.output_path = test::scratch_dir();
  EXPECT_THROW(make_model(options, pool), Error);
  expect_clean_failure({"make-model", "--preset", "tiny", "--type", "q4_k", "--byte-vocab", "-o", test::scratch_dir()},
                       "is not a regular file");
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
  expect_clean_failure({"make-model", "--preset", "tiny", "--type", "iq2_xxs", "--byte-vocab", "-o", "x"}, "unknown type");
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

std::string streaming_model() {
  return test::generated_model("cli_stream", {256, 4, 8, 4, 768, 2048, 0, 10000.0, false}, WeightScheme::Q4_0);
}

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(test::read_bytes_as_text(path)); }

// The smallest --host-mem that runs `model`, from `flexinfer plan --json`.
uint64_t minimum_budget(const std::string& model, const std::string& context) {
  const std::string path = test::scratch_path("minimum.json");
  const test::CommandResult plan = test::run_flexinfer({"plan", "-m", model, "--ctx", context, "-t", "2", "--json", path});
  EXPECT_EQ(plan.exit_code, 0) << plan.err;
  return read_json(path)["host"]["minimum_bytes"].get<uint64_t>();
}

TEST(Cli, GenerationUnderTheMinimumBudgetMatchesTheUnlimitedRun) {
  const std::string model = streaming_model(), plan_json = test::scratch_path("plan.json");
  const test::CommandResult plan =
      test::run_flexinfer({"plan", "-m", model, "--host-mem", "8G", "--ctx", "64", "-t", "2", "--json", plan_json});
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  const nlohmann::json json = read_json(plan_json);
  for (const char* key : {"host", "gpu", "layers", "bytes_per_token", "predicted_decode_tok_s", "bound"})
    EXPECT_TRUE(json.contains(key)) << key;
  EXPECT_EQ(json["layers"].size(), 5u) << "4 layers and the output head";
  EXPECT_EQ(json["layers"][0]["decode_device"], "cpu");
  const auto minimum = json["host"]["minimum_bytes"].get<uint64_t>();

  const std::vector<std::string> common = {"generate", "-m", model, "-p", "hello", "-n", "24", "--temp", "0", "-t", "2", "--ctx", "64"};
  const test::CommandResult unlimited = test::run_flexinfer(common);
  ASSERT_EQ(unlimited.exit_code, 0) << unlimited.err;
  for (const char* io : {"auto", "pread", "mmap"}) {
    std::vector<std::string> budgeted = common;
    budgeted.insert(budgeted.end(), {"--host-mem", std::to_string(minimum), "--io", io});
    const test::CommandResult streamed = test::run_flexinfer(budgeted);
    ASSERT_EQ(streamed.exit_code, 0) << streamed.err;
    EXPECT_EQ(streamed.out, unlimited.out) << io;
  }
  const test::CommandResult shown = test::run_flexinfer({"plan", "-m", model, "--host-mem", std::to_string(minimum), "--ctx", "64", "-t", "2"});
  EXPECT_NE(shown.out.find("staging (2 slots"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("blk.3"), std::string::npos);
}

TEST(Cli, BenchReportsEveryTierAndTheLimit) {
  const std::string json_path = test::scratch_path("bench.json");
  const std::string budget = std::to_string(minimum_budget(streaming_model(), "16"));
  const test::CommandResult result =
      test::run_flexinfer({"bench", "-m", streaming_model(), "-p", "8", "-n", "8", "-t", "2", "--host-mem", budget, "--cold",
                           "--mem-bw", "10", "--disk-bw", "1", "--json", json_path});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const nlohmann::json json = read_json(json_path);
  for (const char* key : {"prefill_tok_s", "decode_tok_s", "limit_tok_s", "achieved_over_limit", "peak_rss_bytes"})
    EXPECT_GT(json[key].get<double>(), 0.0) << key;
  EXPECT_GT(json["bytes_per_token"]["disk"].get<uint64_t>(), 0u) << "the minimum budget streams";
  EXPECT_EQ(json["bytes_per_token"]["gpu"].get<uint64_t>(), 0u);
  EXPECT_TRUE(json["cold"].get<bool>());
}

// The memory's rate measured around the run sets the limit, both readings reported; one rate given
// and one measured is a clear error.
TEST(Cli, BenchMeasuresTheMemoryAroundTheRun) {
  const std::string json_path = test::scratch_path("bench-memory.json");
  const test::CommandResult result =
      test::run_flexinfer({"bench", "-m", streaming_model(), "-p", "4", "-n", "4", "-t", "2", "--measure-memory", "--json", json_path});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("memory measured"), std::string::npos) << result.out;
  const nlohmann::json json = read_json(json_path);
  const nlohmann::json& readings = json["host_read_GBps_before_after"];
  ASSERT_TRUE(readings.is_array()) << json.dump();
  ASSERT_EQ(readings.size(), 2u);
  EXPECT_GT(readings[0].get<double>(), 0.0);
  EXPECT_GT(readings[1].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(json["host_read_GBps"].get<double>(), (readings[0].get<double>() + readings[1].get<double>()) / 2);
  EXPECT_GT(json["limit_tok_s"].get<double>(), 0.0);
  expect_clean_failure({"bench", "-m", streaming_model(), "--measure-memory", "--mem-bw", "10"}, "give one");
}

TEST(Cli, ProbeSavesAProfile) {
  const std::string data = test::scratch_path("probe-data.bin"), profile = test::scratch_path("profile.json");
  test::write_bytes(data, std::vector<uint8_t>(64 << 20, 7));
  const test::CommandResult result = test::run_flexinfer({"probe", "--quick", "--file", data, "-o", profile, "-t", "2"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const nlohmann::json json = read_json(profile);
  for (const char* key : {"disk_read_GBps", "host_read_GBps", "cpu_matvec_GBps"}) EXPECT_GT(json[key].get<double>(), 0.0) << key;
  const test::CommandResult plan =
      test::run_flexinfer({"plan", "-m", streaming_model(), "--host-mem", std::to_string(minimum_budget(streaming_model(), "64")),
                           "--ctx", "64", "--profile", profile});
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  EXPECT_NE(plan.out.find("predicted decode"), std::string::npos);
}

TEST(Cli, BadBudgetsAreOneClearLine) {
  const std::string model = streaming_model();
  expect_clean_failure({"generate", "-m", model, "--host-mem", "lots"}, "not a memory size");
  expect_clean_failure({"generate", "-m", model, "--host-mem", "0"}, "not a memory size");
  expect_clean_failure({"generate", "-m", model, "--host-mem", "1M"}, "below this model's minimum");
  expect_clean_failure({"bench", "-m", model, "--host-mem", "1M"}, "below this model's minimum");
  expect_clean_failure({"plan", "-m", model, "--host-mem", "1M"}, "below this model's minimum");
  expect_clean_failure({"generate", "-m", model, "--io", "aio"}, "unknown backend 'aio'");
  expect_clean_failure({"plan", "-m", model, "--profile", test::scratch_path("no-profile.json")}, "cannot open");
}

TEST(Cli, PlanWithAGpuBudgetPlacesThreeTiersFromAStoredProfile) {
  const std::string model =
      test::generated_model("cli_tiers", {512, 16, 8, 4, 1536, 2048, 0, 10000.0, false}, WeightScheme::Q4_0);
  const std::string json_path = test::scratch_path("tier-plan.json");
  const std::string profile = std::string(FLEXINFER_SOURCE_DIR) + "/tests/profiles/laptop.json";
  auto plan_with = [&](const std::string& gpu, const std::string& host) {
    const test::CommandResult result = test::run_flexinfer({"plan", "-m", model, "--gpu-mem", gpu, "--host-mem", host,
                                                            "--ctx", "64", "--profile", profile, "--json", json_path});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_NE(result.out.find("predicted decode"), std::string::npos) << result.out;
    return read_json(json_path);
  };
  // With room for everything, the fixed costs and the weights; then budgets that hold about a
  // quarter of the weights in VRAM and a tenth in host memory beside their staging slots, so the
  // rest must stay on disk.
  const nlohmann::json roomy = plan_with("1G", "1G");
  auto fixed = [&](const char* tier) {
    uint64_t bytes = 0;
    for (const auto& cost : roomy.at(tier).at("fixed")) bytes += cost.at("bytes").get<uint64_t>();
    return bytes;
  };
  uint64_t weights = 0, largest = 0;
  for (const auto& layer : roomy.at("layers")) {
    const auto& w = layer.at("weight_bytes");
    const uint64_t bytes = w.at("gpu").get<uint64_t>() + w.at("host").get<uint64_t>() + w.at("disk").get<uint64_t>();
    weights += bytes;
    largest = std::max(largest, bytes);
  }
  const uint64_t gpu_budget = fixed("gpu") + 2 * largest + weights / 4;
  const uint64_t host_budget = fixed("host") + 3 * (largest + (1 << 16)) + weights / 10;
  const nlohmann::json plan = plan_with(std::to_string(gpu_budget), std::to_string(host_budget));
  for (const char* tier : {"gpu", "host"}) {
    EXPECT_TRUE(plan.at(tier).contains("budget_bytes")) << tier;
    EXPECT_LE(plan.at(tier).at("used_bytes").get<uint64_t>(), plan.at(tier).at("budget_bytes").get<uint64_t>()) << tier;
  }
  ASSERT_EQ(plan.at("layers").size(), 17u) << "16 layers and the output head";
  uint64_t gpu = 0, host = 0, disk = 0;
  for (const auto& layer : plan.at("layers")) {
    for (const char* key : {"decode_device", "prefill_device"}) {
      const std::string device = layer.at(key).get<std::string>();
      EXPECT_TRUE(device == "gpu" || device == "cpu") << device;
    }
    gpu += layer.at("weight_bytes").at("gpu").get<uint64_t>();
    host += layer.at("weight_bytes").at("host").get<uint64_t>();
    disk += layer.at("weight_bytes").at("disk").get<uint64_t>();
  }
  EXPECT_GT(gpu, 0u);
  EXPECT_GT(host, 0u);
  EXPECT_GT(disk, 0u) << "this budget pair needs all three tiers";
  EXPECT_GT(plan.at("predicted_decode_tok_s").get<double>(), 0.0);
  EXPECT_FALSE(plan.at("bound").get<std::string>().empty());

  // A profile without GPU measurements cannot plan a GPU.
  const std::string cpu_profile = test::scratch_path("cpu-profile.json");
  test::write_bytes(cpu_profile, std::vector<uint8_t>{'{', '"', 'd', 'i', 's', 'k', '_', 'r', 'e', 'a', 'd', '_', 'G', 'B',
                                                      'p', 's', '"', ':', '2', ',', '"', 'h', 'o', 's', 't', '_', 'r',
                                                      'e', 'a', 'd', '_', 'G', 'B', 'p', 's', '"', ':', '2', '0', '}'});
  expect_clean_failure({"plan", "-m", model, "--gpu-mem", "12M", "--profile", cpu_profile}, "no GPU measurements");
  expect_clean_failure({"plan", "-m", model, "--gpu-mem", "1M", "--host-mem", "40M", "--profile", profile},
                       "no placement fits");
}

TEST(Cli, TraceShowsDiskReadsOverlappingCompute) {
  const std::string model = streaming_model();
  const std::string trace_path = test::scratch_path("trace.json");
  // The smallest budget streams most of the model: reads for later layers run while earlier ones compute.
  const std::string plan_path = test::scratch_path("trace-plan.json");
  const test::CommandResult plan = test::run_flexinfer({"plan", "-m", model, "--ctx", "64", "-t", "2", "--json", plan_path});
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  const std::string minimum = std::to_string(read_json(plan_path).at("host").at("minimum_bytes").get<uint64_t>());
  const test::CommandResult result =
      test::run_flexinfer({"generate", "-m", model, "--host-mem", minimum, "--ctx", "64", "-t", "2", "-n", "6", "-p",
                           "hi", "--temp", "0", "--trace", trace_path});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const nlohmann::json events = read_json(trace_path);
  ASSERT_TRUE(events.is_array());
  std::vector<std::pair<double, double>> reads, compute;
  for (const auto& event : events) {
    if (event.at("ph") != "X") continue;
    const double start = event.at("ts").get<double>(), end = start + event.at("dur").get<double>();
    EXPECT_GE(end, start);
    (event.at("cat") == "disk reads" ? reads : compute).emplace_back(start, end);
  }
  EXPECT_GE(reads.size(), 6u);
  EXPECT_GE(compute.size(), 6u * 5);  // 4 layers and the head per token
  size_t overlapping = 0;
  for (const auto& [read_start, read_end] : reads)
    for (const auto& [compute_start, compute_end] : compute)
      overlapping += read_start < compute_end && compute_start < read_end;
  EXPECT_GT(overlapping, 0u) << "reads never overlap compute";
}

// The trace is written as the run goes: a chat session leaves one too, and a path that cannot be
// written fails before the model loads.
TEST(Cli, TraceOfAChatAndTraceFailures) {
  const std::string model = streaming_model();
  const std::string trace_path = test::scratch_path("chat-trace.json");
  test::RunOptions conversation;
  conversation.input = "hello\nagain\n";
  const test::CommandResult chat = test::run_flexinfer(
      {"chat", "-m", model, "--ctx", "512", "-t", "2", "-n", "3", "--temp", "0", "--ignore-eos", "--trace", trace_path}, conversation);
  ASSERT_EQ(chat.exit_code, 0) << chat.err;
  const nlohmann::json events = read_json(trace_path);
  ASSERT_TRUE(events.is_array());
  size_t first_layers = 0;
  for (const auto& event : events) first_layers += event.at("name") == "layer 0";
  EXPECT_GE(first_layers, 6u) << "two replies of three tokens and their prompts";
  expect_clean_failure({"generate", "-m", model, "-p", "hi", "-n", "1", "--trace", "/nonexistent-dir/trace.json"},
                       "--trace: cannot create '/nonexistent-dir/trace.json'");
  // Opens, but every write fails (no space left): said at the end, not ignored.
  if (std::filesystem::exists("/dev/full"))
    expect_clean_failure({"generate", "-m", model, "-p", "hi", "-n", "1", "--trace", "/dev/full"},
                         "--trace: cannot write '/dev/full'");
}

TEST(Cli, GpuBudgetsAreOneClearLine) {
  const std::string model = streaming_model();
  expect_clean_failure({"generate", "-m", model, "--gpu-mem", "lots"}, "not a memory size");
  expect_clean_failure({"generate", "-m", model, "--gpu-mem", "2G", "--profile", test::scratch_path("no-such-profile.json")},
                       "no-such-profile.json");
  std::string why;
  if (!cuda::list_devices(&why).empty()) {
    expect_clean_failure({"generate", "-m", model, "--gpu-mem", "1M"}, "no placement fits");
    return;
  }
  // No device here: every command that takes --gpu-mem says so, and nothing crashes.
  expect_clean_failure({"generate", "-m", model, "--gpu-mem", "2G"}, "no CUDA device");
  expect_clean_failure({"generate", "-m", model, "--gpu-mem", "20M", "--host-mem", "200M"}, "no CUDA device");
  expect_clean_failure({"bench", "-m", model, "--gpu-mem", "2G"}, "no CUDA device");
  expect_clean_failure({"logits", "-m", model, "-p", "hi", "-o", test::scratch_path("gpu-logits.f32"), "--gpu-mem", "2G"},
                       "no CUDA device");
}

// Mixture-of-experts models: make-model writes them, inspect and bench name the experts, plan
// shows them with a GPU (every expert in VRAM, or attention there and the experts on the CPU) on
// any machine.
TEST(Cli, ExpertModelsRunOnTheCpuAndPlanBesideAGpu) {
  const std::string model = test::scratch_path("cli-qwen3moe.gguf");
  const test::CommandResult made = test::run_flexinfer(
      {"make-model", "--preset", "tiny-qwen3moe", "--type", "q4_0", "--byte-vocab", "--router-skew", "2", "-o", model});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const test::CommandResult inspect = test::run_flexinfer({"inspect", model});
  EXPECT_NE(inspect.out.find("mixture of experts: 8 experts per layer, 2 used per token, expert FFN 256"), std::string::npos)
      << inspect.out;
  const test::CommandResult bench = test::run_flexinfer({"bench", "-m", model, "-p", "8", "-n", "4", "-t", "2"});
  ASSERT_EQ(bench.exit_code, 0) << bench.err;
  EXPECT_NE(bench.out.find("experts          8 experts per layer, 2 used per token"), std::string::npos) << bench.out;
  // Under the model's size: experts read on demand, reading ahead while the timing allows (the default).
  const test::CommandResult cached_bench =
      test::run_flexinfer({"bench", "-m", model, "-p", "8", "-n", "4", "-t", "2", "--host-mem", "31M"});
  ASSERT_EQ(cached_bench.exit_code, 0) << cached_bench.err;
  EXPECT_NE(cached_bench.out.find("experts          cache of "), std::string::npos) << cached_bench.out;
  EXPECT_NE(cached_bench.out.find("read ahead       "), std::string::npos) << cached_bench.out;
  // --measure-disk: the expert reads' rate before and after the run, each alone and beside the
  // run's threads kept busy, and the limit those busy rates would make.
  const std::string measured_json = test::scratch_path("cli-qwen3moe-measured.json");
  // --mem-bw: the limit must not need this machine's probe profile.
  const test::CommandResult measured =
      test::run_flexinfer({"bench", "-m", model, "-p", "8", "-n", "4", "-t", "2", "--host-mem", "31M", "--measure-disk",
                           "--mem-bw", "10", "--json", measured_json});
  ASSERT_EQ(measured.exit_code, 0) << measured.err;
  EXPECT_NE(measured.out.find("beside 2 busy threads"), std::string::npos) << measured.out;
  EXPECT_TRUE(measured.out.find("beside busy cores the disk's rates make the limit") != std::string::npos ||
              measured.out.find("beside busy cores the disk still keeps up: the limit stays memory-bound") != std::string::npos)
      << measured.out;
  const nlohmann::json measured_run = read_json(measured_json);
  for (const char* key : {"expert_read_GBps_before_after", "expert_read_GBps_beside_busy_threads_before_after"}) {
    ASSERT_EQ(measured_run[key].size(), 2u) << key;
    for (const auto& rate : measured_run[key]) EXPECT_GT(rate.get<double>(), 0.0) << key;
  }
  if (measured_run["bytes_per_token"]["disk"].get<uint64_t>() > 0) {
    EXPECT_GT(measured_run["limit_tok_s_disk_beside_busy_threads"].get<double>(), 0.0);
  }
  EXPECT_TRUE(measured_run["busy_threads_at_lowest_priority"].is_boolean());
  expect_clean_failure({"bench", "-m", model, "--expert-speculation", "maybe"}, "--expert-speculation: unknown setting 'maybe' (auto, on, off)");
  const test::CommandResult whole = test::run_flexinfer({"plan", "-m", model, "--gpu-mem", "2G"});
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  EXPECT_NE(whole.out.find("gpu       everything, every expert resident: "), std::string::npos) << whole.out;
  // 44 MiB: the dense half (about 43.4 MiB with a 4096-token KV cache and cuBLAS's workspace), not the experts.
  const test::CommandResult plan = test::run_flexinfer({"plan", "-m", model, "--gpu-mem", "44M", "--host-mem", "64M"});
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  EXPECT_NE(plan.out.find("gpu       attention, embedding and head: "), std::string::npos) << plan.out;
  ASSERT_NE(plan.out.find("host memory:"), std::string::npos) << plan.out;
  EXPECT_EQ(plan.out.find("KV cache", plan.out.find("host memory:")), std::string::npos)
      << "the KV cache lives on the GPU: " << plan.out;
  EXPECT_EQ(plan.out.find("a cache of"), std::string::npos) << "no room for experts in VRAM: " << plan.out;
  EXPECT_EQ(plan.out.find("read/token"), std::string::npos) << "no table of layers holding nothing on the host: " << plan.out;
  // More VRAM: a cache of experts there too.
  const std::string cached_json = test::scratch_path("cli-qwen3moe-plan.json");
  const test::CommandResult cached =
      test::run_flexinfer({"plan", "-m", model, "--gpu-mem", "46M", "--host-mem", "64M", "--json", cached_json});
  ASSERT_EQ(cached.exit_code, 0) << cached.err;
  EXPECT_NE(cached.out.find("gpu       a cache of "), std::string::npos) << cached.out;
  const nlohmann::json written = read_json(cached_json);
  EXPECT_EQ(written["gpu"]["budget_bytes"], 46u << 20);
  EXPECT_GT(written["gpu"]["used_bytes"].get<uint64_t>(), 44u << 20) << "the dense half and a cache of experts";
  EXPECT_LE(written["gpu"]["used_bytes"].get<uint64_t>(), 46u << 20);
  // The prediction: the host's part alone from a profile without a GPU's figures, the whole token
  // (the GPU's dense half after the CPU's experts) from one with them.
  auto write_profile = [](const std::string& name, const std::string& text) {
    const std::string path = test::scratch_path(name);
    test::write_bytes(path, std::vector<uint8_t>(text.begin(), text.end()));
    return path;
  };
  const std::string cpu_only = write_profile("cli-moe-cpu-profile.json",
                                             R"({"disk_read_GBps": 2, "host_read_GBps": 20, "cpu_matvec_GBps": 10})");
  const std::string with_gpu = write_profile(
      "cli-moe-gpu-profile.json", R"({"disk_read_GBps": 2, "host_read_GBps": 20, "cpu_matvec_GBps": 10,
          "h2d_pinned_GBps": 25, "vram_read_GBps": 3000, "gpu_matvec_GBps": 0.01})");
  const std::string host_part_json = test::scratch_path("cli-qwen3moe-plan-cpu.json");
  const test::CommandResult host_part = test::run_flexinfer(
      {"plan", "-m", model, "--gpu-mem", "46M", "--host-mem", "64M", "--profile", cpu_only, "--json", host_part_json});
  ASSERT_EQ(host_part.exit_code, 0) << host_part.err;
  EXPECT_NE(host_part.out.find("of the host's part (the profile has no GPU measurements)"), std::string::npos) << host_part.out;
  const nlohmann::json host_part_plan = read_json(host_part_json);
  EXPECT_EQ(host_part_plan["prediction_of"], "the host's part");
  const std::string whole_json = test::scratch_path("cli-qwen3moe-plan-gpu.json");
  const test::CommandResult whole_token = test::run_flexinfer(
      {"plan", "-m", model, "--gpu-mem", "46M", "--host-mem", "64M", "--profile", with_gpu, "--json", whole_json});
  ASSERT_EQ(whole_token.exit_code, 0) << whole_token.err;
  const nlohmann::json whole_plan = read_json(whole_json);
  EXPECT_EQ(whole_plan["prediction_of"], "the whole model");
  const uint64_t gpu_bytes = whole_plan["bytes_per_token"]["gpu"].get<uint64_t>();
  EXPECT_GT(gpu_bytes, 0u) << "attention and the head on the GPU";
  // A GPU this slow (10 MB/s) makes its dense half the bound, and adds to the CPU's time.
  const double gpu_seconds = whole_plan["seconds_per_token"]["gpu"].get<double>();
  EXPECT_NEAR(gpu_seconds, static_cast<double>(gpu_bytes) / 1e7, 1e-9 * gpu_seconds);
  EXPECT_EQ(whole_plan["bound"], "gpu");
  const double cpu_seconds = whole_plan["seconds_per_token"]["cpu"].get<double>();
  EXPECT_DOUBLE_EQ(cpu_seconds, host_part_plan["seconds_per_token"]["cpu"].get<double>());
  EXPECT_NEAR(whole_plan["predicted_decode_tok_s"].get<double>(), 1.0 / (cpu_seconds + gpu_seconds), 1e-6);
  EXPECT_NE(whole_token.out.find("CPU " + strprintf("%.3f", cpu_seconds) + " s + GPU"), std::string::npos) << whole_token.out;
  expect_clean_failure({"plan", "-m", model, "--gpu-mem", "44M", "--host-mem", "1M"}, "below this model's minimum");
  expect_clean_failure({"make-model", "--preset", "tiny-qwen3", "--type", "f16", "--byte-vocab", "--router-skew", "1",
                        "-o", test::scratch_path("cli-skew.gguf")},
                       "--router-skew is for models with experts");
  // Per-tensor types, as llama-quantize's --tensor-type writes them.
  const std::string mixed = test::scratch_path("cli-qwen3moe-mixed.gguf");
  const test::CommandResult made_mixed =
      test::run_flexinfer({"make-model", "--preset", "tiny-qwen3moe", "--type", "q4_0", "--byte-vocab", "--tensor-type",
                           "ffn_up_exps=Q8_0", "--tensor-type", "attn_v=f16", "-o", mixed});
  ASSERT_EQ(made_mixed.exit_code, 0) << made_mixed.err;
  const GgufFile mixed_file = GgufFile::open(mixed);
  EXPECT_EQ(mixed_file.tensors().find("blk.1.ffn_up_exps.weight")->type, TensorType::Q8_0);
  EXPECT_EQ(mixed_file.tensors().find("blk.1.ffn_gate_exps.weight")->type, TensorType::Q4_0);
  EXPECT_EQ(mixed_file.tensors().find("blk.0.attn_v.weight")->type, TensorType::F16);
  const test::CommandResult mixed_bench = test::run_flexinfer({"bench", "-m", mixed, "-p", "8", "-n", "4", "-t", "2"});
  EXPECT_EQ(mixed_bench.exit_code, 0) << mixed_bench.err;
  const std::vector<std::string> make = {"make-model", "--preset", "tiny-qwen3moe", "--type", "q4_0", "--byte-vocab",
                                         "-o", test::scratch_path("cli-bad-type.gguf"), "--tensor-type"};
  auto with = [&](const std::string& choice) {
    std::vector<std::string> args = make;
    args.push_back(choice);
    return args;
  };
  expect_clean_failure(with("ffn_up_exps"), "is not NAME=TYPE");
  expect_clean_failure(with("ffn_upp=q8_0"), "'ffn_upp' is not a weight matrix's name");
  expect_clean_failure(with("ffn_up_exps=q9_0"), "'q9_0' is not a tensor type");
  expect_clean_failure(with("ffn_up=q8_0"), "this model has no ffn_up tensors");
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
