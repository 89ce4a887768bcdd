// libFuzzer: arbitrary bytes as the body of /v1/completions and /v1/chat/completions. An ApiError
// is the expected answer to bad input; a crash, sanitizer report, hang or any other exception is a
// finding. What parses is carried through the response side: the reply text with its stop strings,
// fed a byte at a time and all at once (the two must agree), and the response JSON.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "tools/openai_api.h"

namespace {

std::string reply_text(const std::vector<std::string>& stop, const std::string& text, bool bytewise) {
  fi::ReplyText reply(stop);
  std::string out;
  if (bytewise) {
    for (char c : text) out += reply.add(std::string(1, c));
  } else {
    out = reply.add(text);
  }
  return out + reply.finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (const fi::Endpoint endpoint : {fi::Endpoint::Completions, fi::Endpoint::ChatCompletions}) {
    try {
      const fi::ApiRequest request = fi::parse_api_request(endpoint, body, {});
      std::string text = request.prompt;
      for (const auto& message : request.messages) text += message["content"].get<std::string>();
      const std::string whole = reply_text(request.stop, text, false);
      if (whole != reply_text(request.stop, text, true)) std::abort();
      fi::completion_json(endpoint, "id", 0, request.model, whole, "stop", {})
          .dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    } catch (const fi::ApiError&) {
    }
  }
  return 0;
}
