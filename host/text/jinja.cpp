#include "host/text/jinja.h"

#include "host/text/jinja_ast.h"
#include "host/text/jinja_eval.h"

namespace fi {

namespace jinja {

Template::Template(std::string_view source, const Limits& limits, const Syntax& syntax)
    : program_(parse(source, limits, syntax)), limits_(limits) {}

Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const nlohmann::ordered_json& variables, const RenderOptions& options) const {
  if (!variables.is_object()) throw TemplateError("chat template variables must be a JSON object");
  auto globals = std::make_shared<Scope>(nullptr);
  add_globals(*globals);
  try {
    for (const auto& [name, value] : variables.items()) globals->set(name, from_json(value));
  } catch (const Fault& problem) {
    throw TemplateError("chat template variables: " + problem.message);
  }
  Interpreter interpreter(limits_, options);
  return interpreter.render(*program_, globals);
}

}  // namespace jinja

std::string render_chat(std::string_view template_text, const nlohmann::ordered_json& messages, const ChatRenderOptions& options) {
  if (!messages.is_array()) throw TemplateError("chat messages must be a JSON array");
  if (!options.extra_variables.is_object()) throw TemplateError("extra template variables must be a JSON object");
  nlohmann::ordered_json variables = {
      {"messages", messages},
      {"tools", nullptr},
      {"documents", nullptr},
      {"add_generation_prompt", options.add_generation_prompt},
      {"bos_token", options.bos_token},
      {"eos_token", options.eos_token},
  };
  for (const auto& [name, value] : options.extra_variables.items()) variables[name] = value;
  const jinja::Template compiled(template_text, options.limits);
  jinja::RenderOptions render_options;
  render_options.now = options.now;
  return compiled.render(variables, render_options);
}

}  // namespace fi
