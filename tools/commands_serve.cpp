// flexinfer serve: an OpenAI-compatible HTTP API (cpp-httplib) over the batcher: every active
// request advances in the same forward pass.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include <httplib.h>

#include "host/engine/batcher.h"
#include "host/text/chat_format.h"
#include "io/log.h"
#include "tools/cli.h"
#include "tools/command_support.h"
#include "tools/commands.h"
#include "tools/openai_api.h"

namespace fi {

namespace {

using Json = nlohmann::ordered_json;
using namespace std::chrono_literals;

std::atomic<int> stop_signal{0};

// How long a request's thread waits for news before checking its client and the shutdown.
constexpr auto kPoll = 100ms;

struct ServeArgs {
  std::string host = "127.0.0.1";
  int64_t port = 8080;
  int64_t parallel = 4;
  int64_t queue = 64;
  std::string api_key;
  std::string alias;
  std::string chat_format;
  int64_t timeout = 30;
  SizeChoice max_body{"", 4ull << 20};
};

class Server {
 public:
  Server(Engine& engine, Batcher& batcher, ChatFormat format, std::string model_id, const SamplingArgs& sampling,
         std::string fallback_format)
      : engine_(engine), batcher_(batcher), format_(std::move(format)), fallback_format_(std::move(fallback_format)),
        model_id_(std::move(model_id)), defaults_(sampler_params(sampling)), fixed_seed_(sampling.seed >= 0),
        created_(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count()) {}

  void stop() { stopping_.store(true); }

  void health(httplib::Response& res) const {
    const BatcherStatus status = batcher_.status();
    const Json body = {{"status", "ok"},
                       {"slots", status.slots},
                       {"slots_processing", status.active},
                       {"slots_idle", status.slots - status.active},
                       {"queued", status.queued},
                       {"steps", status.steps},
                       {"tokens_evaluated", status.tokens_evaluated}};
    res.set_content(body.dump(), "application/json");
  }

  Json model_object() const {
    return {{"id", model_id_}, {"object", "model"}, {"created", created_}, {"owned_by", "flexinfer"}};
  }

  void models(httplib::Response& res) const {
    res.set_content(Json({{"object", "list"}, {"data", Json::array({model_object()})}}).dump(), "application/json");
  }

  void model(const httplib::Request& req, httplib::Response& res) const {
    const std::string id = req.matches[1];
    if (id != model_id_) throw ApiError(404, "the model '" + id + "' does not exist; this server has '" + model_id_ + "'",
                                        "model", "model_not_found");
    res.set_content(model_object().dump(), "application/json");
  }

  void generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);

 private:
  struct Exchange;
  std::vector<int32_t> prompt_tokens(const ApiRequest& request);
  bool relay(Exchange& exchange, httplib::DataSink& sink);

  Engine& engine_;
  Batcher& batcher_;
  std::mutex format_mutex_;  // a template that fails is replaced by the built-in format once
  ChatFormat format_;
  std::string fallback_format_;
  std::string model_id_;
  SamplerParams defaults_;
  bool fixed_seed_;
  int64_t created_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<bool> stopping_{false};
};

std::vector<int32_t> Server::prompt_tokens(const ApiRequest& request) {
  const Tokenizer& tokenizer = engine_.tokenizer();
  if (request.endpoint == Endpoint::Completions) {
    if (request.prompt_tokens) return *request.prompt_tokens;
    // As generate tokenizes its prompt.
    return tokenizer.encode(request.prompt, tokenizer.adds_bos(), false);
  }
  std::string text;
  std::string bos_token;
  {
    std::lock_guard lock(format_mutex_);
    try {
      text = format_.render(request.messages, true);
    } catch (const TemplateRaisedError& error) {
      throw ApiError(400, std::string("the chat template refuses this conversation: ") + error.what(), "messages");
    } catch (const TemplateError& error) {
      log_warning("the chat template failed (%s): using the built-in format '%s' from now on", error.what(),
                  fallback_format_.c_str());
      format_ = ChatFormat::built_in(fallback_format_, format_.bos_token(), format_.eos_token());
      text = format_.render(request.messages, true);
    }
    bos_token = format_.bos_token();
  }
  // Templates that write the BOS token themselves get no second one.
  const bool bos_in_text = !bos_token.empty() && text.rfind(bos_token, 0) == 0;
  return tokenizer.encode(text, tokenizer.adds_bos() && !bos_in_text, true);
}

// One request from submission to its last byte.
struct Server::Exchange {
  Endpoint endpoint;
  bool stream = false;
  bool include_usage = false;
  std::string id;
  std::string model;
  std::shared_ptr<BatchStream> generation;
  ReplyText reply;
  Usage usage;
  std::chrono::steady_clock::time_point start;
  std::vector<int32_t> first_tokens;  // taken before the response began
  bool first_done = false;            // the generation had ended by then
};

void Server::generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
  const ApiRequest request = parse_api_request(endpoint, req.body, defaults_);
  BatchRequest batch;
  batch.prompt = prompt_tokens(request);
  if (batch.prompt.empty()) throw ApiError(400, "the prompt is empty and the model has no BOS token to start from", "prompt");
  const int64_t context = engine_.forward().context();
  const auto prompt_size = static_cast<int64_t>(batch.prompt.size());
  const char* const limit_name = "max_tokens";
  if (prompt_size >= context || (request.max_tokens && prompt_size + *request.max_tokens > context))
    throw ApiError(400,
                   strprintf("this server's context is %" PRId64 " tokens per request; the prompt has %" PRId64
                             "%s (lower %s or shorten the prompt)",
                             context, prompt_size,
                             request.max_tokens ? strprintf(" and %s is %" PRId64, limit_name, *request.max_tokens).c_str()
                                                : "",
                             limit_name),
                   request.max_tokens                     ? limit_name
                   : endpoint == Endpoint::Completions ? "prompt"
                                                       : "messages",
                   "context_length_exceeded");
  // OpenAI's defaults: 16 tokens for a completion, the rest of the context for a chat reply.
  const int64_t room = context - prompt_size;
  batch.max_tokens = request.max_tokens ? *request.max_tokens : endpoint == Endpoint::Completions ? std::min<int64_t>(16, room) : room;
  batch.sampling = request.sampling;
  batch.ignore_end_of_generation = request.ignore_eos;
  if (!request.seed_given && !fixed_seed_) batch.sampling.seed = std::random_device{}();

  auto exchange = std::make_shared<Exchange>(Exchange{
      endpoint, request.stream, request.include_usage,
      (endpoint == Endpoint::ChatCompletions ? "chatcmpl-" : "cmpl-") + std::to_string(created_) + "-" + std::to_string(next_id_++),
      request.model.empty() ? model_id_ : request.model, nullptr,
      ReplyText(request.stop, endpoint == Endpoint::Completions && !request.prompt_tokens && request.prompt.empty() &&
                                  engine_.tokenizer().strips_leading_space()),
      {prompt_size, 0, 0}, std::chrono::steady_clock::now()});
  try {
    exchange->generation = batcher_.submit(std::move(batch));
  } catch (const Error& error) {
    throw ApiError(400, error.what(), "prompt");
  }
  if (!exchange->generation)
    throw ApiError(503, "the server is busy: every slot is taken and the queue is full; retry later", "", "server_busy",
                   "server_error");
  // The status goes out with the first token (or the end): a generation that fails before it (its
  // prompt's evaluation) is answered with a 500, not a 200 and an error in the body. A client that
  // leaves while its request waits for a slot or its prompt is evaluated is noticed at that token.
  BatchStream& generation = *exchange->generation;
  while (exchange->first_tokens.empty() && !exchange->first_done) {
    if (stopping_.load()) {
      generation.cancel();
      throw ApiError(503, "the server is stopping", "", "", "server_error");
    }
    exchange->first_done = generation.take(exchange->first_tokens, kPoll);
  }
  if (exchange->first_done && generation.finish_reason() == FinishReason::Failed)
    throw ApiError(500, "the generation failed: " + generation.failure(), "", "", "server_error");
  // Written as the generation goes: a client that leaves is noticed (and its slot freed) while
  // it runs, not at the end.
  res.set_chunked_content_provider(request.stream ? "text/event-stream" : "application/json",
                                   [this, exchange](size_t, httplib::DataSink& sink) {
                                     const bool finished = relay(*exchange, sink);
                                     if (!finished) exchange->generation->cancel();
                                     return finished;
                                   });
}

// Passes the generation to the client; false when the client left or the server stops.
bool Server::relay(Exchange& x, httplib::DataSink& sink) {
  const Tokenizer& tokenizer = engine_.tokenizer();
  auto send = [&](const Json& object) {
    const std::string text = (x.stream ? "data: " : "") + object.dump(-1, ' ', false, Json::error_handler_t::replace) +
                             (x.stream ? "\n\n" : "\n");
    return sink.write(text.data(), text.size());
  };
  if (x.stream && x.endpoint == Endpoint::ChatCompletions && !send(chunk_json(x.endpoint, x.id, created_, x.model, "", "", true)))
    return false;
  std::string text;
  std::vector<int32_t> tokens = std::move(x.first_tokens);
  bool done = x.first_done;
  for (bool first = true; first || !done; first = false) {
    if (!first) {
      if (stopping_.load()) return false;
      done = x.generation->take(tokens, kPoll);
    }
    std::string added;
    for (int32_t token : tokens) {
      if (x.reply.stopped()) break;
      added += x.reply.add(tokenizer.piece(token));
      ++x.usage.completion_tokens;
    }
    tokens.clear();
    if (x.reply.stopped()) {
      x.generation->cancel();
      done = true;
    }
    if (x.stream && !added.empty() && !send(chunk_json(x.endpoint, x.id, created_, x.model, added, ""))) return false;
    if (!x.stream) text += added;
    if (!done && !sink.is_writable()) return false;
  }
  const FinishReason reason = x.reply.stopped() ? FinishReason::EndOfGeneration : x.generation->finish_reason();
  if (reason == FinishReason::Cancelled) return false;
  if (reason == FinishReason::Failed) {
    const ApiError error(500, "the generation failed: " + x.generation->failure(), "", "", "server_error");
    const std::string body = (x.stream ? "data: " : "") + error_body(error) + (x.stream ? "\n\n" : "\n");
    sink.write(body.data(), body.size());
    sink.done();
    return true;
  }
  const std::string rest = x.reply.finish();
  const std::string finish_reason = reason == FinishReason::Length ? "length" : "stop";
  x.usage.cached_tokens = x.generation->cached_tokens();
  if (x.stream) {
    if (!rest.empty() && !send(chunk_json(x.endpoint, x.id, created_, x.model, rest, ""))) return false;
    if (!send(chunk_json(x.endpoint, x.id, created_, x.model, "", finish_reason))) return false;
    if (x.include_usage && !send(usage_chunk_json(x.endpoint, x.id, created_, x.model, x.usage))) return false;
    static const std::string kDone = "data: [DONE]\n\n";
    if (!sink.write(kDone.data(), kDone.size())) return false;
  } else if (!send(completion_json(x.endpoint, x.id, created_, x.model, text + rest, finish_reason, x.usage))) {
    return false;
  }
  sink.done();
  log_info("%s: prompt %" PRId64 " tokens (%" PRId64 " cached), %" PRId64 " generated, %s, %.2f s", x.id.c_str(),
           x.usage.prompt_tokens, x.usage.cached_tokens, x.usage.completion_tokens, finish_reason.c_str(),
           seconds_since(x.start));
  return true;
}

void send_error(httplib::Response& res, const ApiError& error) {
  res.status = error.status;
  res.set_content(error_body(error), "application/json");
}

// Every handler answers bad input with an OpenAI-style error, and nothing escapes a handler.
template <typename Handler>
httplib::Server::Handler guarded(Handler handler) {
  return [handler](const httplib::Request& req, httplib::Response& res) {
    try {
      handler(req, res);
    } catch (const ApiError& error) {
      send_error(res, error);
    } catch (const std::exception& error) {
      log_warning("%s %s: %s", req.method.c_str(), req.path.c_str(), error.what());
      send_error(res, ApiError(500, error.what(), "", "", "server_error"));
    }
  };
}

std::string model_id_of(const std::string& path) { return std::filesystem::path(path).filename().string(); }

}  // namespace

int command_serve(int argc, char** argv) {
  const auto app = command_app("serve", "An OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions, "
                                        "/v1/models, /health. Concurrent requests are decoded together.");
  EngineArgs engine_args;
  SamplingArgs sampling_args;
  ServeArgs args;
  add_engine_options(*app, engine_args);
  add_sampling_options(*app, sampling_args);
  app->add_option("--host", args.host, "address to listen on (default 127.0.0.1: this machine only)")->type_name("ADDRESS");
  integer_option(*app, "--port", args.port, 0, 65535, "port to listen on; 0 = any free one (default 8080)");
  integer_option(*app, "--parallel", args.parallel, 1, kMaxSequences,
                 "requests decoded together, each with its own KV cache of --ctx tokens; -np too (default 4)");
  integer_option(*app, "--queue", args.queue, 0, 4096, "requests that may wait for a slot; more get 503 (default 64)");
  app->add_option("--api-key", args.api_key, "require 'Authorization: Bearer KEY' on /v1/ (default: $FLEXINFER_API_KEY)")
      ->type_name("KEY");
  app->add_option("--alias", args.alias, "the model's name in the API (default: the file's name)")->type_name("NAME");
  checked_option(*app, "--chat-format", args.chat_format, one_of(chat_format_names(), "chat format"),
                 "a built-in chat format instead of the model's template: " + joined(chat_format_names()))
      ->type_name("NAME");
  integer_option(*app, "--timeout", args.timeout, 1, 3600, "seconds a client may take to send or receive (default 30)");
  size_option(*app, "--max-body", args.max_body, {}, "largest request body (default 4M)");
  if (!parse_command_line(*app, argc, argv, 2)) return 0;
  require_option(*app, "--model");
  if (args.api_key.empty())
    if (const char* key = std::getenv("FLEXINFER_API_KEY")) args.api_key = key;
  EngineOptions options = engine_options(*app, engine_args);
  options.sequences = args.parallel;

  Engine engine(options);
  show_placement(engine);
  std::string notice;
  ChatFormat format = ChatFormat::from_model(engine.model().file(), engine.tokenizer(),
                                             args.chat_format.empty() ? std::nullopt : std::optional<std::string>(args.chat_format),
                                             &notice);
  if (!notice.empty()) log_info("%s", notice.c_str());
  Batcher batcher(engine, {static_cast<size_t>(args.queue)});
  Server server(engine, batcher, std::move(format), args.alias.empty() ? model_id_of(engine_args.model) : args.alias,
                sampling_args, args.chat_format.empty() ? "chatml" : args.chat_format);

  httplib::Server http;
  // A thread for each request holding a slot or waiting for one, and a few to refuse the rest.
  const size_t threads = static_cast<size_t>(args.parallel + args.queue) + 4;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(*args.max_body.bytes);
  http.set_read_timeout(static_cast<time_t>(args.timeout), 0);
  http.set_write_timeout(static_cast<time_t>(args.timeout), 0);
  http.set_keep_alive_timeout(2);
  const std::string api_key = args.api_key;
  http.set_pre_routing_handler([api_key](const httplib::Request& req, httplib::Response& res) {
    if (api_key.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") == "Bearer " + api_key) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "a valid API key is required: 'Authorization: Bearer KEY'", "", "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // httplib's own refusals (unknown path, body too large, malformed request) in the API's shape.
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string message = res.status == 404   ? "unknown endpoint " + req.method + " " + req.path
                                : res.status == 413 ? std::string("the request body is too large (--max-body)")
                                                    : "the request was refused (HTTP " + std::to_string(res.status) + ")";
    send_error(res, ApiError(res.status, message));
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    send_error(res, ApiError(500, "internal error", "", "", "server_error"));
  });
  http.Get("/health", guarded([&](const httplib::Request&, httplib::Response& res) { server.health(res); }));
  for (const char* prefix : {"/v1", ""}) {
    const std::string p = prefix;
    http.Get(p + "/models", guarded([&](const httplib::Request&, httplib::Response& res) { server.models(res); }));
    http.Get(p + "/models/(.+)", guarded([&](const httplib::Request& req, httplib::Response& res) { server.model(req, res); }));
    http.Post(p + "/completions", guarded([&](const httplib::Request& req, httplib::Response& res) {
                server.generate(Endpoint::Completions, req, res);
              }));
    http.Post(p + "/chat/completions", guarded([&](const httplib::Request& req, httplib::Response& res) {
                server.generate(Endpoint::ChatCompletions, req, res);
              }));
  }

  int port = static_cast<int>(args.port);
  if (port == 0) port = http.bind_to_any_port(args.host);
  else if (!http.bind_to_port(args.host, port)) port = -1;
  if (port <= 0) fail("cannot listen on %s:%lld (in use, or not an address of this machine)", args.host.c_str(),
                      static_cast<long long>(args.port));
  const bool loopback = args.host == "127.0.0.1" || args.host == "localhost" || args.host == "::1";
  if (!loopback && args.api_key.empty())
    log_warning("listening on %s without --api-key: anyone who can reach this address can use the model", args.host.c_str());

  // SIGINT and SIGTERM stop the server in order: open requests end, the engine shuts down.
  std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error return, not the end of the server
  struct sigaction action {};
  action.sa_handler = [](int signal) { stop_signal.store(signal); };
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  std::thread watcher([&] {
    while (stop_signal.load() == 0) std::this_thread::sleep_for(kPoll);
    server.stop();
    http.stop();
  });
  // The address is the command's own report: shown at every log level (tests and scripts read it).
  std::fprintf(stderr, "flexinfer: serving %s on http://%s:%d with %lld slots of %lld tokens\n",
               model_id_of(engine_args.model).c_str(), args.host.c_str(), port, static_cast<long long>(args.parallel),
               static_cast<long long>(engine.forward().context()));
  std::fflush(stderr);
  const bool listened = http.listen_after_bind();
  if (stop_signal.load() == 0) stop_signal.store(-1);
  watcher.join();
  finish_trace(engine);
  if (!listened && stop_signal.load() < 0) fail("the server stopped listening");
  return stop_signal.load() == SIGINT ? 130 : 0;
}

}  // namespace fi
