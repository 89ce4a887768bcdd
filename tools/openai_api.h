#pragma once
// The OpenAI-compatible API's JSON: requests read from untrusted bodies (bounded in size and
// nesting, every field's type and range checked, named in the error), responses and stream chunks
// written as OpenAI writes them, and the reply text assembled from token pieces with stop strings.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/text/sampler.h"
#include "io/error.h"

namespace fi {

// An error the client caused or must hear about, as OpenAI reports it.
class ApiError : public Error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string code = {},
           std::string type = "invalid_request_error")
      : Error(message), status(status), param(std::move(param)), code(std::move(code)), type(std::move(type)) {}
  int status;
  std::string param, code, type;
};
// {"error": {"message", "type", "param", "code"}}
std::string error_body(const ApiError& error);

enum class Endpoint { Completions, ChatCompletions };

// Limits on what a request may ask for.
constexpr size_t kMaxJsonDepth = 64;
constexpr size_t kMaxStopStrings = 4;
constexpr size_t kMaxStopBytes = 256;

struct ApiRequest {
  Endpoint endpoint = Endpoint::Completions;
  std::string model;
  std::string prompt;                        // completions, as text
  std::optional<std::vector<int32_t>> prompt_tokens;  // completions, as token ids
  nlohmann::ordered_json messages;           // chat: [{"role", "content": text, ...}]
  std::optional<int64_t> max_tokens;
  SamplerParams sampling;
  bool seed_given = false;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool ignore_eos = false;     // llama.cpp's extension: end-of-generation tokens do not end it
};

// Throws ApiError (400) naming the field at fault. `defaults`: the sampling of fields not given.
ApiRequest parse_api_request(Endpoint endpoint, std::string_view body, const SamplerParams& defaults);

// The reply's text from token pieces: whole UTF-8 characters only, held back while they might begin
// a stop string; a stop string ends the reply (it and what follows are not part of it).
class ReplyText {
 public:
  explicit ReplyText(std::vector<std::string> stop, bool strip_leading_space = false)
      : stop_(std::move(stop)), strip_leading_space_(strip_leading_space) {}
  // Adds a token's bytes; returns the text now safe to send.
  std::string add(const std::string& piece);
  // The end of generation: the rest (an unfinished UTF-8 sequence becomes U+FFFD, as generate
  // prints it).
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stop_;
  bool strip_leading_space_;
  std::string pending_;  // bytes not yet whole characters
  std::string held_;     // whole characters that may begin a stop string
  bool stopped_ = false;
};

// The response objects and stream chunks (nlohmann::ordered_json keeps OpenAI's field order).
struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
};
nlohmann::ordered_json usage_json(const Usage& usage);
nlohmann::ordered_json completion_json(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
                                       const std::string& text, const std::string& finish_reason, const Usage& usage);
// One chunk of a stream: text (a delta) and/or a finish reason (empty: null); role_only starts a
// chat stream with {"role": "assistant", "content": ""}.
nlohmann::ordered_json chunk_json(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
                                  const std::string& text, const std::string& finish_reason, bool role_only = false);
// The last chunk of a stream with stream_options.include_usage: no choices, the usage.
nlohmann::ordered_json usage_chunk_json(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
                                        const Usage& usage);

}  // namespace fi
