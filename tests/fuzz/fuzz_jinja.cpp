// libFuzzer: arbitrary text parsed as a chat template and rendered against a fixed conversation
// (with tools, a tool call and a tool result), under small limits so each input stays fast.
// Template errors are expected answers; a crash, sanitizer report, hang, or any exception other
// than fi::TemplateError is a finding.
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "host/text/jinja.h"

namespace {

const nlohmann::ordered_json& conversation() {
  static const nlohmann::ordered_json messages = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "You are helpful. /think"},
    {"role": "user", "content": "What's the weather in Zürich? 日本語 😀"},
    {"role": "assistant", "content": "<think>check</think>Let me look.",
     "tool_calls": [{"id": "call12345", "type": "function",
                     "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 2}}}]},
    {"role": "tool", "tool_call_id": "call12345", "content": "{\"temp\": 21.5}"},
    {"role": "assistant", "content": "It is 21.5 degrees."},
    {"role": "user", "content": ""}
  ])");
  return messages;
}

fi::ChatRenderOptions options() {
  fi::ChatRenderOptions options;
  options.bos_token = "<s>";
  options.eos_token = "</s>";
  options.extra_variables = nlohmann::ordered_json::parse(R"({
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    "enable_thinking": false
  })");
  options.now = [] {
    std::tm time{};
    time.tm_year = 124, time.tm_mon = 6, time.tm_mday = 26, time.tm_wday = 5, time.tm_yday = 207;
    return time;
  };
  options.limits.max_output_bytes = 64 << 10;
  options.limits.max_steps = 200'000;
  options.limits.max_loop_iterations = 20'000;
  options.limits.max_allocated_bytes = 16 << 20;
  options.limits.max_range = 1'000;
  return options;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fi::ChatRenderOptions render_options = options();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    fi::render_chat(text, conversation(), render_options);
  } catch (const fi::TemplateError&) {
  }
  return 0;
}
