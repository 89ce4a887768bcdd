// flexinfer chat (a conversation in the terminal) and flexinfer template (render a chat template).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <iomanip>
#include <sstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <editline/readline.h>
#include <nlohmann/json.hpp>

#include "host/engine/engine.h"
#include "host/text/chat_format.h"
#include "host/text/unicode.h"
#include "io/error.h"
#include "io/log.h"
#include "tools/cli.h"
#include "tools/command_support.h"
#include "tools/commands.h"

namespace fi {

namespace {

std::atomic<bool> stop_reply{false};

nlohmann::ordered_json read_messages(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--messages: cannot open '%s'", path.c_str());
  nlohmann::ordered_json messages;
  try {
    messages = nlohmann::ordered_json::parse(in);
  } catch (const nlohmann::json::exception& error) {
    fail("--messages: '%s' is not JSON (%s)", path.c_str(), error.what());
  }
  if (!messages.is_array()) fail("--messages: '%s' must hold an array of messages", path.c_str());
  for (const auto& message : messages)
    if (!message.is_object() || !message.contains("role") || !message["role"].is_string())
      fail("--messages: every message needs a \"role\" string (OpenAI-style [{\"role\": ..., \"content\": ...}])");
  return messages;
}

// The tokens two sequences start with in common.
size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

// A moment written 'YYYY-MM-DD HH:MM:SS', with its weekday and day of the year filled in.
std::optional<std::tm> parse_moment(const std::string& text) {
  std::tm moment{};
  std::istringstream in(text);
  in >> std::get_time(&moment, "%Y-%m-%d %H:%M:%S");
  if (in.fail()) return std::nullopt;
  moment.tm_isdst = -1;
  std::mktime(&moment);
  return moment;
}

// One line of input: with line editing and history on a terminal, plain lines otherwise; nullopt
// at the end of input (Ctrl-D).
std::optional<std::string> read_line(bool terminal) {
  if (terminal) {
    char* line = ::readline("> ");
    if (!line) return std::nullopt;
    std::string text(line);
    std::free(line);
    if (!text.empty()) ::add_history(text.c_str());
    return text;
  }
  std::string text;
  if (!std::getline(std::cin, text)) return std::nullopt;
  return text;
}

}  // namespace

int command_template(int argc, char** argv) {
  const auto app = command_app("template", "Print the prompt a chat template makes of a conversation (for debugging templates).");
  std::string model, file, messages_path, bos_token, eos_token, chat_format;
  bool no_generation_prompt = false;
  app->add_option("-m,--model", model, "take the template and special tokens from this GGUF file")->type_name("FILE");
  app->add_option("--file", file, "take the template from this Jinja file")->type_name("FILE");
  app->add_option("--messages", messages_path, "the conversation: OpenAI-style JSON [{\"role\": ..., \"content\": ...}]")
      ->type_name("FILE");
  app->add_flag("--no-generation-prompt", no_generation_prompt, "do not open an assistant turn at the end");
  app->add_option("--bos-token", bos_token, "bos_token as the template sees it (default: the model's, or empty)")->type_name("TEXT");
  app->add_option("--eos-token", eos_token, "eos_token as the template sees it (default: the model's, or empty)")->type_name("TEXT");
  checked_option(*app, "--chat-format", chat_format, one_of(chat_format_names(), "chat format"),
                 "a built-in format instead of the model's template")
      ->type_name("NAME");
  std::string now;
  checked_option(
      *app, "--now", now,
      [](const std::string& text) -> std::string {
        return parse_moment(text) ? "" : "'" + text + "' is not 'YYYY-MM-DD HH:MM:SS'";
      },
      "the moment strftime_now() formats, as 'YYYY-MM-DD HH:MM:SS' (default: now)")
      ->type_name("TIME");
  if (!parse_command_line(*app, argc, argv, 2)) return 0;
  std::function<std::tm()> clock;
  if (!now.empty()) clock = [moment = *parse_moment(now)] { return moment; };
  require_option(*app, "--messages");
  if ((app->count("--model") > 0) == (app->count("--file") > 0))
    throw UsageError("template: give exactly one of -m MODEL or --file TEMPLATE.jinja");
  const nlohmann::ordered_json messages = read_messages(messages_path);
  std::optional<ChatFormat> format;
  if (!model.empty()) {
    const GgufFile gguf = GgufFile::open(model);
    const auto tokenizer = Tokenizer::from_gguf(gguf);
    std::string notice;
    const ChatFormat found =
        chat_format.empty() ? ChatFormat::from_model(gguf, *tokenizer, std::nullopt, &notice)
                            : ChatFormat::built_in(chat_format, tokenizer->bos() >= 0 ? tokenizer->text(tokenizer->bos()) : "",
                                                   tokenizer->eos() >= 0 ? tokenizer->text(tokenizer->eos()) : "");
    if (!notice.empty()) log_info("%s", notice.c_str());
    format.emplace(found.name(), found.source(), app->count("--bos-token") > 0 ? bos_token : found.bos_token(),
                   app->count("--eos-token") > 0 ? eos_token : found.eos_token());
  } else {
    std::ifstream in(file, std::ios::binary);
    if (!in) fail("--file: cannot open '%s'", file.c_str());
    const std::string source((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    format.emplace(chat_format.empty() ? "--file" : chat_format, source, bos_token, eos_token);
  }
  const std::string text = format->render(messages, !no_generation_prompt, nlohmann::ordered_json::object(), clock);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

int command_chat(int argc, char** argv) {
  const auto app = command_app("chat", "Chat with a model in the terminal (/reset starts over, /exit or Ctrl-D leaves; Ctrl-C stops a reply).");
  EngineArgs engine_args;
  SamplingArgs sampling_args;
  std::string system, chat_format;
  int64_t max_reply = -1;
  bool ignore_eos = false;
  add_engine_options(*app, engine_args);
  add_sampling_options(*app, sampling_args);
  app->add_option("--system", system, "a system message to begin the conversation with")->type_name("TEXT");
  checked_option(*app, "--chat-format", chat_format, one_of(chat_format_names(), "chat format"),
                 "the format when the model has no usable chat template: " + joined(chat_format_names()) + " (default: from its vocabulary)")
      ->type_name("NAME");
  integer_option(*app, "-n,--n-predict", max_reply, -1, 1 << 24,
                 "most tokens per reply; -1 = until an end-of-generation token or the context is full (default)");
  app->add_flag("--ignore-eos", ignore_eos, "do not end a reply at end-of-generation tokens");
  if (!parse_command_line(*app, argc, argv, 2)) return 0;
  const EngineOptions options = engine_options(*app, engine_args);
  Sampler sampler(sampler_params(sampling_args));

  Engine engine(options);
  show_placement(engine);
  const Tokenizer& tokenizer = engine.tokenizer();
  std::string notice;
  ChatFormat format = ChatFormat::from_model(engine.model().file(), tokenizer,
                                             chat_format.empty() ? std::nullopt : std::optional<std::string>(chat_format), &notice);
  if (!notice.empty()) log_info("%s", notice.c_str());

  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  auto start_over = [&] {
    messages = nlohmann::ordered_json::array();
    if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
  };
  start_over();
  std::vector<int32_t> cached;  // the tokens whose keys and values are in the cache, in order
  std::string cached_text;      // the text they stand for
  const bool terminal = ::isatty(STDIN_FILENO) != 0;
  const int64_t context = engine.forward().context();

  // Ctrl-C stops the reply being written and returns to the prompt; at the prompt it ends the
  // program as usual.
  struct sigaction stop_action {}, default_action {};
  stop_action.sa_handler = [](int) { stop_reply.store(true); };
  sigemptyset(&stop_action.sa_mask);
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);

  while (const std::optional<std::string> line = read_line(terminal)) {
    if (*line == "/exit") break;
    if (*line == "/reset") {
      start_over();
      engine.forward().reset();
      cached.clear();
      cached_text.clear();
      std::fprintf(stderr, "[conversation reset]\n");
      continue;
    }
    if (line->empty()) continue;
    messages.push_back({{"role", "user"}, {"content", *line}});
    std::string prompt;
    try {
      prompt = format.render(messages, true);
    } catch (const TemplateRaisedError& error) {
      std::fprintf(stderr, "[the chat template refuses this conversation: %s]\n", error.what());
      messages.erase(messages.end() - 1);
      continue;
    } catch (const TemplateError& error) {
      const std::string fallback = chat_format.empty() ? "chatml" : chat_format;
      log_warning("the model's chat template failed (%s): using the built-in format '%s'", error.what(), fallback.c_str());
      format = ChatFormat::built_in(fallback, format.bos_token(), "");
      prompt = format.render(messages, true);
    }
    // When the conversation's text continues the cached text (the usual case), only the new part
    // is tokenized: the reply keeps the very tokens the model wrote. Otherwise (a template that
    // rewrites earlier turns) the whole text is, and the cache keeps the prefix it shares.
    std::vector<int32_t> tokens;
    if (!cached.empty() && prompt.size() > cached_text.size() && prompt.compare(0, cached_text.size(), cached_text) == 0) {
      tokens = cached;
      const std::vector<int32_t> added = tokenizer.encode(std::string_view(prompt).substr(cached_text.size()), false, true);
      tokens.insert(tokens.end(), added.begin(), added.end());
    } else {
      // Templates that write the BOS token themselves get no second one.
      const bool bos_in_text = !format.bos_token().empty() && prompt.rfind(format.bos_token(), 0) == 0;
      tokens = tokenizer.encode(prompt, tokenizer.adds_bos() && !bos_in_text, true);
    }
    // Only what follows the prefix this conversation shares with the cache is evaluated; at least
    // the last token, whose logits start the reply.
    const size_t reused = std::min(common_prefix(cached, tokens), tokens.size() - 1);
    const int64_t room = context - static_cast<int64_t>(tokens.size());
    if (room < 1) {
      std::fprintf(stderr, "[the conversation (%zu tokens) no longer fits the context of %" PRId64 " tokens: /reset to start over]\n",
                   tokens.size(), context);
      messages.erase(messages.end() - 1);
      continue;
    }
    engine.forward().rewind(static_cast<int64_t>(reused));
    const std::vector<int32_t> fresh(tokens.begin() + static_cast<std::ptrdiff_t>(reused), tokens.end());
    std::vector<int32_t> reply;
    std::vector<std::string> pieces;
    std::string pending, text;
    stop_reply.store(false);
    sigaction(SIGINT, &stop_action, nullptr);
    const GenerationStats stats = engine.generate(
        fresh, max_reply >= 0 ? std::min<int64_t>(max_reply, room) : room, sampler,
        [&](int32_t token) {
          reply.push_back(token);
          pieces.push_back(tokenizer.piece(token));
          pending += pieces.back();
          const std::string ready = take_valid_utf8(pending);
          text += ready;
          std::fwrite(ready.data(), 1, ready.size(), stdout);
          std::fflush(stdout);
        },
        &stop_reply, ignore_eos);
    sigaction(SIGINT, &default_action, nullptr);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    // The reply's last token is in the cache only when another one was asked for after it.
    const size_t evaluated_reply = static_cast<size_t>(engine.forward().position()) - tokens.size();
    cached = tokens;
    cached.insert(cached.end(), reply.begin(), reply.begin() + static_cast<std::ptrdiff_t>(evaluated_reply));
    cached_text = prompt;
    for (size_t i = 0; i < evaluated_reply; ++i) cached_text += pieces[i];
    messages.push_back({{"role", "assistant"}, {"content", text}});
    std::fprintf(stderr,
                 "[prompt %zu tokens: %zu from the cache, %zu evaluated in %.2f s | reply %" PRId64 " tokens, %.2f tok/s%s]\n",
                 tokens.size(), reused, fresh.size(), stats.prompt_seconds, stats.generated_tokens,
                 stats.generation_seconds > 0 ? static_cast<double>(stats.generated_tokens) / stats.generation_seconds : 0.0,
                 stats.interrupted ? " | stopped" : "");
  }
  finish_trace(engine);
  return 0;
}

}  // namespace fi
