#pragma once
// How a conversation becomes a prompt: the chat template stored in the model file
// (tokenizer.chat_template, Jinja, rendered by host/text/jinja.h), or one of the built-in formats
// (chatml, llama3, llama2, mistral, gemma, phi3) when the file has none or ours cannot render it.
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/text/jinja.h"
#include "host/text/tokenizer.h"
#include "io/gguf.h"

namespace fi {

// The built-in formats' names, for --chat-format.
const std::vector<std::string>& chat_format_names();

class ChatFormat {
 public:
  // A template's source with the special tokens it refers to; throws TemplateError when it does
  // not parse.
  ChatFormat(std::string name, std::string source, std::string bos_token, std::string eos_token);

  // The model's: its template, or, without one, `fallback` (or a built-in format its vocabulary
  // suggests). A template we cannot parse falls back too; `notice` then says why (empty when the
  // file's template is used).
  static ChatFormat from_model(const GgufFile& file, const Tokenizer& tokenizer, const std::optional<std::string>& fallback,
                               std::string* notice);
  // A built-in format by name, with the model's special tokens; throws Error for an unknown name.
  static ChatFormat built_in(const std::string& name, const std::string& bos_token, const std::string& eos_token);

  const std::string& name() const { return name_; }  // "the model's template" or a built-in format's name
  // messages: [{"role": ..., "content": ...}, ...]. Throws TemplateError (TemplateRaisedError when
  // the template itself refuses the conversation).
  // now: the local time strftime_now() formats (unset: the clock's).
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& extra_variables = nlohmann::ordered_json::object(),
                     std::function<std::tm()> now = {}) const;
  const std::string& source() const { return source_; }
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }

 private:
  std::string name_;
  std::string source_;
  std::string bos_token_, eos_token_;
};

}  // namespace fi
