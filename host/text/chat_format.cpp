#include "host/text/chat_format.h"

#include <utility>

#include "io/error.h"

namespace fi {

namespace {

// The built-in formats, written as templates of our own: the turn markers each model family's
// published format uses.
struct BuiltIn {
  const char* name;
  const char* source;
};

constexpr BuiltIn kBuiltIns[] = {
    {"chatml",
     "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}"
     "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"},
    {"llama3",
     "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message.role }}<|end_header_id|>\n\n"
     "{{ message.content | trim }}<|eot_id|>{% endfor %}"
     "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"},
    // A system message goes inside the first [INST], wrapped in <<SYS>>.
    {"llama2",
     "{% set ns = namespace(system='') %}{% for message in messages %}{% if message.role == 'system' %}"
     "{% set ns.system = '<<SYS>>\n' + message.content + '\n<</SYS>>\n\n' %}"
     "{% elif message.role == 'user' %}{{ bos_token }}[INST] {{ ns.system }}{{ message.content | trim }} [/INST]"
     "{% set ns.system = '' %}{% else %} {{ message.content | trim }} {{ eos_token }}{% endif %}{% endfor %}"},
    // The system message is prepended to the first user turn.
    {"mistral",
     "{{ bos_token }}{% set ns = namespace(system='') %}{% for message in messages %}{% if message.role == 'system' %}"
     "{% set ns.system = message.content + '\n\n' %}{% elif message.role == 'user' %}[INST] {{ ns.system }}"
     "{{ message.content }}[/INST]{% set ns.system = '' %}{% else %}{{ message.content }}{{ eos_token }}{% endif %}"
     "{% endfor %}"},
    // Gemma has no system role: the system message opens the first user turn; the assistant is "model".
    {"gemma",
     "{{ bos_token }}{% set ns = namespace(system='') %}{% for message in messages %}{% if message.role == 'system' %}"
     "{% set ns.system = message.content + '\n\n' %}{% else %}<start_of_turn>"
     "{{ 'model' if message.role == 'assistant' else message.role }}\n{{ ns.system }}{{ message.content | trim }}"
     "<end_of_turn>\n{% set ns.system = '' %}{% endif %}{% endfor %}"
     "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"},
    {"phi3",
     "{% for message in messages %}<|{{ message.role }}|>\n{{ message.content }}<|end|>\n{% endfor %}"
     "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"},
};

// The built-in format whose turn markers the vocabulary has (chatml when none matches).
std::string format_for_vocabulary(const Tokenizer& tokenizer) {
  auto has = [&](const char* text) {
    for (int32_t id = 0; id < tokenizer.size(); ++id)
      if (tokenizer.text(id) == text) return true;
    return false;
  };
  if (has("<|start_header_id|>")) return "llama3";
  if (has("<|im_start|>")) return "chatml";
  if (has("<start_of_turn>")) return "gemma";
  if (has("<|assistant|>")) return "phi3";
  if (has("[INST]")) return "mistral";
  return "chatml";
}

std::string token_text(const Tokenizer& tokenizer, int32_t id) { return id >= 0 ? tokenizer.text(id) : std::string(); }

}  // namespace

const std::vector<std::string>& chat_format_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> list;
    for (const BuiltIn& format : kBuiltIns) list.push_back(format.name);
    return list;
  }();
  return names;
}

ChatFormat::ChatFormat(std::string name, std::string source, std::string bos_token, std::string eos_token)
    : name_(std::move(name)), source_(std::move(source)), bos_token_(std::move(bos_token)), eos_token_(std::move(eos_token)) {
  const jinja::Template parsed(source_);  // a syntax error shows now, not at the first message
}

ChatFormat ChatFormat::built_in(const std::string& name, const std::string& bos_token, const std::string& eos_token) {
  for (const BuiltIn& format : kBuiltIns)
    if (name == format.name) return ChatFormat(name, format.source, bos_token, eos_token);
  std::string names;
  for (const std::string& known : chat_format_names()) names += (names.empty() ? "" : ", ") + known;
  fail("unknown chat format '%s' (%s)", name.c_str(), names.c_str());
}

ChatFormat ChatFormat::from_model(const GgufFile& file, const Tokenizer& tokenizer,
                                  const std::optional<std::string>& fallback, std::string* notice) {
  const std::string bos = token_text(tokenizer, tokenizer.bos()), eos = token_text(tokenizer, tokenizer.eos());
  const std::string format = fallback ? *fallback : format_for_vocabulary(tokenizer);
  const std::optional<std::string> source = file.get_string("tokenizer.chat_template");
  if (!source) {
    *notice = "the model has no chat template (tokenizer.chat_template): using the built-in format '" + format + "'";
    return built_in(format, bos, eos);
  }
  try {
    ChatFormat model_template("the model's template", *source, bos, eos);
    notice->clear();
    return model_template;
  } catch (const TemplateError& error) {
    *notice = "the model's chat template cannot be used (" + std::string(error.what()) + "): using the built-in format '" +
              format + "'";
    return built_in(format, bos, eos);
  }
}

std::string ChatFormat::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                               const nlohmann::ordered_json& extra_variables, std::function<std::tm()> now) const {
  ChatRenderOptions options;
  options.now = std::move(now);
  options.add_generation_prompt = add_generation_prompt;
  options.bos_token = bos_token_;
  options.eos_token = eos_token_;
  options.extra_variables = extra_variables;
  return render_chat(source_, messages, options);
}

}  // namespace fi
