// flexinfer chat driven through a pseudo-terminal as a person would: line editing on, two turns
// (the second evaluates only what is new), Ctrl-C stopping a reply, /reset, Ctrl-D leaving; and
// flexinfer template on the reference cases.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <regex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace fi {
namespace {

// flexinfer running on the slave side of a pseudo-terminal.
class Terminal {
 public:
  explicit Terminal(const std::vector<std::string>& arguments) {
    pid_ = ::forkpty(&master_, nullptr, nullptr, nullptr);
    if (pid_ == 0) {
      std::vector<char*> argv{const_cast<char*>(FLEXINFER_BINARY)};
      for (const std::string& a : arguments) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(FLEXINFER_BINARY, argv.data());
      _exit(127);
    }
  }
  ~Terminal() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) ::close(master_);
  }
  bool started() const { return pid_ > 0 && master_ >= 0; }
  void type(const std::string& keys) { ASSERT_EQ(::write(master_, keys.data(), keys.size()), static_cast<ssize_t>(keys.size())); }
  // Reads until `pattern` matches what came since the last call (or 60 s pass); returns that text.
  std::string read_until(const std::regex& pattern) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!std::regex_search(pending_, pattern) && std::chrono::steady_clock::now() < deadline) {
      pollfd ready{master_, POLLIN, 0};
      if (::poll(&ready, 1, 100) <= 0) continue;
      char buffer[4096];
      const ssize_t got = ::read(master_, buffer, sizeof buffer);
      if (got <= 0) break;
      pending_.append(buffer, static_cast<size_t>(got));
    }
    std::string seen;
    std::swap(seen, pending_);
    return seen;
  }
  // The exit status, or -1 if the program is still running after `seconds`.
  int wait_exit(int seconds = 30) {
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) return -1;
      read_until(std::regex("$^"));  // keep the terminal drained
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  int master_ = -1;
  pid_t pid_ = -1;
  std::string pending_;
};

struct TurnCounts {
  long prompt = -1, reused = -1, evaluated = -1, reply = -1;
  bool stopped = false;
};

TurnCounts counts_in(const std::string& text) {
  static const std::regex turn(R"(\[prompt (\d+) tokens: (\d+) from the cache, (\d+) evaluated in [0-9.]+ s \| reply (\d+) tokens[^\]]*\])");
  std::smatch match;
  TurnCounts counts;
  if (!std::regex_search(text, match, turn)) return counts;
  counts = {std::stol(match[1]), std::stol(match[2]), std::stol(match[3]), std::stol(match[4]), false};
  counts.stopped = match[0].str().find("stopped") != std::string::npos;
  return counts;
}

const std::regex kTurnEnd(R"(\[prompt \d+ tokens:[^\]]*\])");
const std::regex kTurnEndThenPrompt(R"(\[prompt \d+ tokens:[^\]]*\][^]*> )");

// tiny-qwen3 with Qwen3's own vocabulary and chat template, so the reply is text a template can
// carry over into the next turn.
std::string qwen3_chat_model() {
  const std::string path = test::scratch_path("tiny-qwen3-chat.gguf");
  const test::CommandResult made = test::run_flexinfer({"make-model", "--preset", "tiny-qwen3", "--type", "q8_0", "--vocab",
                                                        test::shared_data() + "/vocab/ggml-vocab-qwen3.gguf", "-o", path});
  EXPECT_EQ(made.exit_code, 0) << made.err;
  return path;
}

TEST(Chat, TwoTurnsThroughATerminalTheSecondEvaluatesOnlyTheNewTokens) {
  FI_REQUIRE_SHARED_DATA();
  const std::string model = qwen3_chat_model();
  Terminal chat({"chat", "-m", model, "-n", "12", "--temp", "0", "-c", "512", "--system", "Be brief."});
  ASSERT_TRUE(chat.started());
  chat.type("Hello there\r");
  const TurnCounts first = counts_in(chat.read_until(kTurnEnd));
  ASSERT_GT(first.prompt, 0) << "no first turn";
  EXPECT_EQ(first.reused, 0);
  EXPECT_EQ(first.evaluated, first.prompt);
  chat.type("And now?\r");
  const TurnCounts second = counts_in(chat.read_until(kTurnEnd));
  ASSERT_GT(second.prompt, first.prompt);
  std::printf("first turn: %ld prompt tokens evaluated, %ld reply tokens; second turn: %ld prompt tokens, %ld from the cache, "
              "%ld evaluated\n", first.evaluated, first.reply, second.prompt, second.reused, second.evaluated);
  // Everything the first turn left in the cache, its prompt and its reply but the last token (the
  // reply stopped at -n 12, so nothing was asked after it), is reused; only the rest is evaluated.
  EXPECT_EQ(second.reused, first.prompt + first.reply - 1);
  EXPECT_EQ(second.evaluated, second.prompt - second.reused);
  chat.type("/reset\r");
  chat.read_until(std::regex(R"(\[conversation reset\])"));
  chat.type("Hi\r");
  EXPECT_EQ(counts_in(chat.read_until(kTurnEndThenPrompt)).reused, 0) << "a reset conversation starts from scratch";
  // Ctrl-D once line editing has settled at the prompt: one that comes while it is still setting
  // the terminal up can be taken as a literal character.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  chat.type("\x04");
  EXPECT_EQ(chat.wait_exit(), 0);
}

TEST(Chat, CtrlCStopsTheReplyAndReturnsToThePrompt) {
  const std::string model = test::preset_model("tiny-qwen3", "q8_0");
  // --ignore-eos: the reply must still be running when Ctrl-C comes, whatever tokens this CPU's
  // kernels lead a random-weight model to.
  Terminal chat({"chat", "-m", model, "--temp", "0", "-c", "4096", "--repeat-penalty", "1.0", "--ignore-eos"});
  ASSERT_TRUE(chat.started());
  chat.read_until(std::regex("> "));  // loaded, at the prompt: what comes after the typed line is the reply
  chat.type("Tell me a long story\r");
  // The reply has begun: more text than line editing's echo and redraw of the typed line make.
  chat.read_until(std::regex("story\\r?\\n[^]{200,}"));
  chat.type("\x03");  // Ctrl-C
  const TurnCounts stopped = counts_in(chat.read_until(kTurnEnd));
  EXPECT_TRUE(stopped.stopped) << "Ctrl-C ends the reply";
  EXPECT_LT(stopped.reply, 4000);
  chat.type("/exit\r");
  EXPECT_EQ(chat.wait_exit(), 0) << "and the chat goes on until /exit";
}

// flexinfer template renders every reference case of ../shared/data/templates byte for byte, or
// fails with the template's own message and exit status 1.
TEST(Template, EveryReferenceCaseThroughTheCommand) {
  FI_REQUIRE_SHARED_DATA();
  const std::string directory = test::shared_data() + "/templates/";
  const nlohmann::json cases = nlohmann::json::parse(test::read_bytes_as_text(directory + "cases.json"));
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    const std::string name = c["template"].get<std::string>() + "/" + c["conversation"].get<std::string>();
    SCOPED_TRACE(name);
    const std::string messages = test::scratch_path("messages.json");
    const std::string text = nlohmann::ordered_json(c["messages"]).dump();
    test::write_bytes(messages, std::vector<uint8_t>(text.begin(), text.end()));
    std::vector<std::string> arguments = {"template", "--file", directory + c["template"].get<std::string>() + ".jinja",
                                          "--messages", messages, "--bos-token", c["bos_token"].get<std::string>(),
                                          "--eos-token", c["eos_token"].get<std::string>(), "--now", "2024-07-26 00:00:00"};
    if (!c["add_generation_prompt"].get<bool>()) arguments.push_back("--no-generation-prompt");
    const test::CommandResult result = test::run_flexinfer(arguments);
    if (c.contains("error")) {
      EXPECT_EQ(result.exit_code, 1);
      EXPECT_NE(result.err.find(c["error"].get<std::string>()), std::string::npos) << result.err;
    } else {
      EXPECT_EQ(result.exit_code, 0) << result.err;
      EXPECT_EQ(result.out, c["expected"].get<std::string>());
    }
  }
}

}  // namespace
}  // namespace fi
