#include "tools/openai_api.h"

#include <algorithm>
#include <limits>

#include "host/text/unicode.h"

namespace fi {

using Json = nlohmann::ordered_json;

std::string error_body(const ApiError& error) {
  const Json body = {{"error",
                      {{"message", error.what()},
                       {"type", error.type},
                       {"param", error.param.empty() ? Json(nullptr) : Json(error.param)},
                       {"code", error.code.empty() ? Json(nullptr) : Json(error.code)}}}};
  return body.dump(-1, ' ', false, Json::error_handler_t::replace);
}

namespace {

ApiError bad(const std::string& param, const std::string& message) { return ApiError(400, message, param); }

// The field when present and not null.
const Json* field(const Json& object, const char* key) {
  const auto found = object.find(key);
  return found == object.end() || found->is_null() ? nullptr : &*found;
}

std::optional<double> number(const Json& object, const char* key, double low, double high) {
  const Json* value = field(object, key);
  if (!value) return std::nullopt;
  if (!value->is_number()) throw bad(key, std::string("'") + key + "' must be a number");
  const double x = value->get<double>();
  if (!(x >= low && x <= high))
    throw bad(key, strprintf("'%s' must be between %g and %g (got %g)", key, low, high, x));
  return x;
}

std::optional<int64_t> integer(const Json& object, const char* key, int64_t low, int64_t high) {
  const Json* value = field(object, key);
  if (!value) return std::nullopt;
  if (!value->is_number_integer()) throw bad(key, std::string("'") + key + "' must be an integer");
  if (value->is_number_unsigned() && value->get<uint64_t>() > static_cast<uint64_t>(high))
    throw bad(key, strprintf("'%s' must be at most %lld", key, static_cast<long long>(high)));
  const auto x = value->get<int64_t>();
  if (x < low || x > high)
    throw bad(key, strprintf("'%s' must be between %lld and %lld (got %lld)", key, static_cast<long long>(low),
                             static_cast<long long>(high), static_cast<long long>(x)));
  return x;
}

std::optional<bool> boolean(const Json& object, const char* key) {
  const Json* value = field(object, key);
  if (!value) return std::nullopt;
  if (!value->is_boolean()) throw bad(key, std::string("'") + key + "' must be true or false");
  return value->get<bool>();
}

std::optional<std::string> string(const Json& object, const char* key) {
  const Json* value = field(object, key);
  if (!value) return std::nullopt;
  if (!value->is_string()) throw bad(key, std::string("'") + key + "' must be a string");
  return value->get<std::string>();
}

// Features of the API flexinfer does not offer are refused, not ignored: a client relying on them
// learns at once.
void refuse_unsupported(const Json& body) {
  if (const auto n = integer(body, "n", 1, 128); n && *n != 1) throw bad("n", "only n = 1 is supported");
  if (const auto best_of = integer(body, "best_of", 1, 128); best_of && *best_of != 1)
    throw bad("best_of", "only best_of = 1 is supported");
  if (const Json* logprobs = field(body, "logprobs")) {
    const bool wanted = logprobs->is_boolean() ? logprobs->get<bool>() : !(logprobs->is_number_integer() && logprobs->get<int64_t>() == 0);
    if (wanted) throw bad("logprobs", "log probabilities are not supported");
  }
  if (const auto top_logprobs = integer(body, "top_logprobs", 0, 20); top_logprobs && *top_logprobs > 0)
    throw bad("top_logprobs", "log probabilities are not supported");
  if (boolean(body, "echo").value_or(false)) throw bad("echo", "echo is not supported");
  if (const auto suffix = string(body, "suffix"); suffix && !suffix->empty()) throw bad("suffix", "suffix is not supported");
  if (const Json* bias = field(body, "logit_bias")) {
    if (!bias->is_object()) throw bad("logit_bias", "'logit_bias' must be an object");
    if (!bias->empty()) throw bad("logit_bias", "logit_bias is not supported");
  }
  if (const Json* tools = field(body, "tools")) {
    if (!tools->is_array()) throw bad("tools", "'tools' must be an array");
    if (!tools->empty()) throw bad("tools", "tools (function calling) are not supported");
  }
  if (const Json* format = field(body, "response_format")) {
    if (!format->is_object()) throw bad("response_format", "'response_format' must be an object");
    const auto type = string(*format, "type");
    if (type && *type != "text") throw bad("response_format", "response_format '" + *type + "' is not supported; only 'text'");
  }
}

void read_sampling(const Json& body, ApiRequest& request) {
  SamplerParams& s = request.sampling;
  if (const auto x = number(body, "temperature", 0.0, 2.0)) s.temperature = static_cast<float>(*x);
  if (const auto x = number(body, "top_p", 0.0, 1.0)) s.top_p = static_cast<float>(*x);
  if (const auto x = integer(body, "top_k", 0, 1 << 20)) s.top_k = static_cast<int>(*x);
  if (const auto x = number(body, "min_p", 0.0, 1.0)) s.min_p = static_cast<float>(*x);
  if (const auto x = number(body, "presence_penalty", -2.0, 2.0)) s.presence_penalty = static_cast<float>(*x);
  if (const auto x = number(body, "frequency_penalty", -2.0, 2.0)) s.frequency_penalty = static_cast<float>(*x);
  if (const auto x = number(body, "repeat_penalty", 0.0, 10.0)) {
    if (*x == 0.0) throw bad("repeat_penalty", "'repeat_penalty' must be positive (1 = off)");
    s.repeat_penalty = static_cast<float>(*x);
  }
  if (const Json* seed = field(body, "seed")) {
    if (!seed->is_number_integer()) throw bad("seed", "'seed' must be an integer");
    s.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : static_cast<uint64_t>(seed->get<int64_t>());
    request.seed_given = true;
  }
}

void read_stop(const Json& body, ApiRequest& request) {
  const Json* stop = field(body, "stop");
  if (!stop) return;
  auto add = [&](const Json& value) {
    if (!value.is_string()) throw bad("stop", "'stop' must be a string or an array of strings");
    const std::string text = value.get<std::string>();
    if (text.empty()) throw bad("stop", "stop strings must not be empty");
    if (text.size() > kMaxStopBytes) throw bad("stop", strprintf("stop strings are limited to %zu bytes", kMaxStopBytes));
    request.stop.push_back(text);
  };
  if (stop->is_array()) {
    if (stop->size() > kMaxStopStrings) throw bad("stop", strprintf("at most %zu stop strings", kMaxStopStrings));
    for (const Json& value : *stop) add(value);
  } else {
    add(*stop);
  }
}

void read_prompt(const Json& body, ApiRequest& request) {
  const auto found = body.find("prompt");
  if (found == body.end() || found->is_null()) throw bad("prompt", "'prompt' is required");
  const Json& prompt = *found;
  auto tokens = [&](const Json& ids) {
    std::vector<int32_t> out;
    for (const Json& id : ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > std::numeric_limits<int32_t>::max())
        throw bad("prompt", "token ids in 'prompt' must be non-negative integers");
      out.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
    if (out.empty()) throw bad("prompt", "'prompt' is empty");
    return out;
  };
  if (prompt.is_string()) {
    request.prompt = prompt.get<std::string>();
    return;
  }
  if (!prompt.is_array() || prompt.empty()) throw bad("prompt", "'prompt' must be a string, an array of one string, or token ids");
  if (prompt.size() == 1 && prompt[0].is_string()) {
    request.prompt = prompt[0].get<std::string>();
  } else if (prompt[0].is_number_integer()) {
    request.prompt_tokens = tokens(prompt);
  } else if (prompt.size() == 1 && prompt[0].is_array()) {
    request.prompt_tokens = tokens(prompt[0]);
  } else if (prompt.size() > 1 && (prompt[0].is_string() || prompt[0].is_array())) {
    throw bad("prompt", "one prompt per request");
  } else {
    throw bad("prompt", "'prompt' must be a string, an array of one string, or token ids");
  }
}

void read_messages(const Json& body, ApiRequest& request) {
  const auto found = body.find("messages");
  if (found == body.end() || !found->is_array()) throw bad("messages", "'messages' must be an array of messages");
  if (found->empty()) throw bad("messages", "'messages' is empty");
  request.messages = Json::array();
  for (size_t i = 0; i < found->size(); ++i) {
    const Json& message = (*found)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!message.is_object()) throw bad(where, where + " must be an object");
    const auto role_field = message.find("role");
    if (role_field == message.end() || !role_field->is_string()) throw bad(where + ".role", where + ".role must be a string");
    std::string role = role_field->get<std::string>();
    static const char* const kRoles[] = {"system", "developer", "user", "assistant", "tool"};
    if (std::none_of(std::begin(kRoles), std::end(kRoles), [&](const char* r) { return role == r; }))
      throw bad(where + ".role", "unknown role '" + role + "' in " + where);
    // OpenAI's newer name for the system prompt; chat templates know only "system".
    if (role == "developer") role = "system";
    std::string content;
    const auto content_field = message.find("content");
    if (content_field == message.end() || content_field->is_null()) {
      if (role != "assistant") throw bad(where + ".content", where + ".content is required");
    } else if (content_field->is_string()) {
      content = content_field->get<std::string>();
    } else if (content_field->is_array()) {
      for (const Json& part : *content_field) {
        if (!part.is_object() || string(part, "type").value_or("") != "text" || !part.contains("text") || !part["text"].is_string())
          throw bad(where + ".content", "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
        content += part["text"].get<std::string>();
      }
    } else {
      throw bad(where + ".content", where + ".content must be a string or an array of text parts");
    }
    Json normalized = message;
    normalized["role"] = role;
    normalized["content"] = content;
    request.messages.push_back(std::move(normalized));
  }
}

}  // namespace

ApiRequest parse_api_request(Endpoint endpoint, std::string_view body, const SamplerParams& defaults) {
  Json json;
  try {
    // Nesting is bounded while parsing: a deep body never reaches the recursive parts of the library.
    json = Json::parse(body, [](int depth, Json::parse_event_t, Json&) {
      if (static_cast<size_t>(depth) > kMaxJsonDepth)
        throw ApiError(400, strprintf("the body nests deeper than %zu levels", kMaxJsonDepth));
      return true;
    });
  } catch (const Json::exception& error) {
    throw ApiError(400, std::string("the body is not valid JSON: ") + error.what());
  }
  if (!json.is_object()) throw ApiError(400, "the body must be a JSON object");
  ApiRequest request;
  request.endpoint = endpoint;
  request.sampling = defaults;
  request.model = string(json, "model").value_or("");
  refuse_unsupported(json);
  if (endpoint == Endpoint::Completions) read_prompt(json, request);
  else read_messages(json, request);
  const char* const limit_key = endpoint == Endpoint::ChatCompletions && field(json, "max_completion_tokens")
                                    ? "max_completion_tokens"
                                    : "max_tokens";
  request.max_tokens = integer(json, limit_key, 1, int64_t{1} << 24);
  read_sampling(json, request);
  read_stop(json, request);
  request.stream = boolean(json, "stream").value_or(false);
  request.ignore_eos = boolean(json, "ignore_eos").value_or(false);
  if (const Json* options = field(json, "stream_options")) {
    if (!options->is_object()) throw bad("stream_options", "'stream_options' must be an object");
    if (!request.stream) throw bad("stream_options", "'stream_options' is only allowed with 'stream': true");
    request.include_usage = boolean(*options, "include_usage").value_or(false);
  }
  return request;
}

std::string ReplyText::add(const std::string& piece) {
  if (stopped_) return {};
  pending_ += piece;
  if (strip_leading_space_ && !pending_.empty()) {
    if (pending_[0] == ' ') pending_.erase(0, 1);
    strip_leading_space_ = false;
  }
  held_ += take_valid_utf8(pending_);
  if (stop_.empty()) return std::exchange(held_, {});
  size_t first_stop = std::string::npos;
  for (const std::string& stop : stop_) first_stop = std::min(first_stop, held_.find(stop));
  if (first_stop != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first_stop);
    held_.clear();
    return out;
  }
  // Keep the longest tail that could still grow into a stop string.
  size_t keep = 0;
  for (const std::string& stop : stop_)
    for (size_t length = std::min(stop.size() - 1, held_.size()); length > keep; --length)
      if (held_.compare(held_.size() - length, length, stop, 0, length) == 0) {
        keep = length;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string ReplyText::finish() {
  if (stopped_) return {};
  std::string out = std::exchange(held_, {});
  if (!pending_.empty()) out += "\xEF\xBF\xBD";
  pending_.clear();
  return out;
}

Json usage_json(const Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", usage.cached_tokens}}}};
}

namespace {
Json finish_value(const std::string& reason) { return reason.empty() ? Json(nullptr) : Json(reason); }
const char* object_name(Endpoint endpoint, bool chunk) {
  if (endpoint == Endpoint::Completions) return "text_completion";
  return chunk ? "chat.completion.chunk" : "chat.completion";
}
}  // namespace

Json completion_json(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
                     const std::string& text, const std::string& finish_reason, const Usage& usage) {
  Json choice;
  if (endpoint == Endpoint::Completions) {
    choice = {{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_value(finish_reason)}};
  } else {
    choice = {{"index", 0},
              {"message", {{"role", "assistant"}, {"content", text}}},
              {"logprobs", nullptr},
              {"finish_reason", finish_value(finish_reason)}};
  }
  return {{"id", id},
          {"object", object_name(endpoint, false)},
          {"created", created},
          {"model", model},
          {"choices", Json::array({choice})},
          {"usage", usage_json(usage)}};
}

Json chunk_json(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model, const std::string& text,
                const std::string& finish_reason, bool role_only) {
  Json choice;
  if (endpoint == Endpoint::Completions) {
    choice = {{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_value(finish_reason)}};
  } else {
    Json delta = Json::object();
    if (role_only) delta = {{"role", "assistant"}, {"content", ""}};
    else if (!text.empty()) delta = {{"content", text}};
    choice = {{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", finish_value(finish_reason)}};
  }
  return {{"id", id},
          {"object", object_name(endpoint, true)},
          {"created", created},
          {"model", model},
          {"choices", Json::array({choice})}};
}

Json usage_chunk_json(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
                      const Usage& usage) {
  return {{"id", id},
          {"object", object_name(endpoint, true)},
          {"created", created},
          {"model", model},
          {"choices", Json::array()},
          {"usage", usage_json(usage)}};
}

}  // namespace fi
