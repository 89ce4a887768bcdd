#pragma once
// A Jinja interpreter for chat templates: the subset of Jinja2 that published templates use, with
// Hugging Face's settings (trim_blocks, lstrip_blocks, loop controls, tojson without ASCII
// escaping, raise_exception, strftime_now). Templates come from downloaded model files, so parsing
// and rendering are bounded (Limits) and refuse file access (include, import, extends).
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "io/error.h"

namespace fi {

// Any template problem: syntax (with line and column), runtime error, or a limit reached.
class TemplateError : public Error {
 public:
  using Error::Error;
};

// The template called raise_exception(message): what() is exactly that message.
class TemplateRaisedError : public TemplateError {
 public:
  using TemplateError::TemplateError;
};

namespace jinja {

struct Limits {
  size_t max_template_bytes = 4u << 20;
  size_t max_output_bytes = 1u << 20;           // the rendered text, and any one string made while rendering
  uint64_t max_loop_iterations = 1'000'000;     // all loops of one render together
  uint64_t max_steps = 20'000'000;              // evaluations, iterations and items processed by filters
  uint64_t max_allocated_bytes = 512ull << 20;  // strings and containers made during one render, summed
  int64_t max_range = 100'000;                  // items of one range(), as Jinja2's sandbox
  int max_nesting_depth = 64;                   // nested expressions and blocks in the source
  int max_call_depth = 32;                      // nested macro calls
};

// How the source is split into text and tags; the defaults are Hugging Face's.
struct Syntax {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

struct RenderOptions {
  // Local time for strftime_now(); unset: the system clock.
  std::function<std::tm()> now;
};

struct Program;

class Template {
 public:
  // Parses; throws TemplateError with the line and column of a syntax error.
  explicit Template(std::string_view source, const Limits& limits = {}, const Syntax& syntax = {});
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // `variables` must be an object: its members are the template's global names.
  std::string render(const nlohmann::ordered_json& variables, const RenderOptions& options = {}) const;

 private:
  std::unique_ptr<Program> program_;
  Limits limits_;
};

}  // namespace jinja

struct ChatRenderOptions {
  bool add_generation_prompt = true;
  std::string bos_token, eos_token;
  // More global names (tools, documents, enable_thinking, ...), an object. `tools` and `documents`
  // are none unless given here, as Hugging Face passes them.
  nlohmann::ordered_json extra_variables = nlohmann::ordered_json::object();
  std::function<std::tm()> now;  // local time for strftime_now(); unset: the system clock
  jinja::Limits limits;
};

// Renders a conversation (a JSON array of messages) with a chat template.
std::string render_chat(std::string_view template_text, const nlohmann::ordered_json& messages, const ChatRenderOptions& options = {});

}  // namespace fi
