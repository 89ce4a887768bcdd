#include "tools/cli.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <iterator>
#include <random>
#include <sstream>
#include <vector>

#include "host/kernels/thread_pool.h"
#include "io/log.h"
#include "planner/budget.h"
#include "planner/profile.h"

namespace fi {

namespace {

std::string command_of(const CLI::App& app) { return app.get_name(); }

[[noreturn]] void usage_error(const CLI::App& app, const std::string& message) {
  throw UsageError(command_of(app) + ": " + message + " (see 'flexinfer " + command_of(app) + " --help')");
}

std::string io_problem(const std::string& name) {
  return parse_io_backend(name) ? "" : "unknown backend '" + name + "' (auto, uring, pread, mmap)";
}

std::string expert_policy_problem(const std::string& name) {
  return parse_expert_policy(name) ? "" : "unknown policy '" + name + "' (frequency, recency)";
}

// Edit distance, for suggesting the option the user probably meant.
size_t distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string closest_option(const CLI::App& app, const std::string& given) {
  std::string best;
  size_t best_distance = std::string::npos;
  for (const CLI::Option* option : app.get_options()) {
    std::vector<std::string> names;
    for (const std::string& name : option->get_lnames()) names.push_back("--" + name);
    for (const std::string& name : option->get_snames()) names.push_back("-" + name);
    for (const std::string& name : names) {
      const size_t d = distance(given, name);
      if (d < best_distance) {
        best_distance = d;
        best = name;
      }
    }
  }
  // Close enough to be a typo: at most two edits, or a third of the name.
  return best_distance <= std::max<size_t>(2, given.size() / 3) ? best : std::string();
}

// The first name of the option CLI11 reports an error for ("--n-predict: 1 required ...").
std::string option_in(const std::string& message) { return message.substr(0, message.find(':')); }

// Whether `argument` is one of llama.cpp's `names`, bare, with "=VALUE", or (for a short name
// listed in `glued`) with its number glued on ("-ngl99").
bool names_llama_option(const std::string& argument, std::initializer_list<const char*> names,
                        std::initializer_list<const char*> glued = {}) {
  for (const std::string name : names)
    if (argument == name || argument.rfind(name + "=", 0) == 0) return true;
  for (const std::string name : glued)
    if (argument.size() > name.size() && argument.rfind(name, 0) == 0 &&
        std::isdigit(static_cast<unsigned char>(argument[name.size()])))
      return true;
  return false;
}

// llama.cpp's layer count has no meaning here: budgets decide placement.
bool is_gpu_layers(const std::string& argument) {
  return names_llama_option(argument, {"-ngl", "--n-gpu-layers", "--gpu-layers"}, {"-ngl"});
}

// llama.cpp's placement of experts by hand, once, at load: here each expert is placed by the
// budgets and by how often the router chooses it.
bool is_hand_placement(const std::string& argument) {
  return names_llama_option(argument, {"-ot", "--override-tensor", "-cmoe", "--cpu-moe", "-ncmoe", "--n-cpu-moe"});
}

// Whether `argument` names an option of `app` that takes its value from the next argument.
bool value_follows(const CLI::App& app, const std::string& argument) {
  if (argument.size() < 2 || argument[0] != '-' || argument.find('=') != std::string::npos) return false;
  const CLI::Option* option = app.get_option_no_throw(argument);
  return option && option->get_items_expected_min() > 0;
}

std::string read_all(std::istream& in) { return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()); }

}  // namespace

std::unique_ptr<CLI::App> command_app(const std::string& command, const std::string& description) {
  auto app = std::make_unique<CLI::App>(description, command);
  app->set_help_flag("-h,--help", "print this help and exit");
  app->get_formatter()->column_width(34);
  app->add_flag("-v,--verbose")->description("log what the engine decides and why (--log-level debug)");
  app->add_option("--log-level", "debug, info, warning, error or off (default info: warnings and where the weights live)")
      ->each([app = app.get()](const std::string& name) {
        if (!parse_log_level(name))
          usage_error(*app, "--log-level '" + name + "' is not one of debug, info, warning, error, off");
      });
  app->add_option("--log-file", "also append every message to this file");
  return app;
}

bool parse_command_line(CLI::App& app, int argc, char** argv, int first) {
  std::vector<std::string> arguments;
  bool is_value = false;
  for (int i = first; i < argc; ++i) {
    const std::string argument = argv[i];
    // Another option's value, whatever it looks like ("-p --cpu-moe" is a prompt).
    if (is_value) {
      arguments.push_back(argument);
      is_value = false;
      continue;
    }
    if (is_gpu_layers(argument))
      throw UsageError(command_of(app) + ": '" + argument +
                       "' is llama.cpp's layer count; flexinfer places a model by memory: give --gpu-mem SIZE (e.g. "
                       "--gpu-mem 6G) or leave it at auto (the GPU's free memory)");
    if (is_hand_placement(argument))
      throw UsageError(command_of(app) + ": '" + argument +
                       "' is llama.cpp's placement of tensors by hand; flexinfer places each expert by memory and by "
                       "how often it is chosen: give --gpu-mem SIZE and --host-mem SIZE, or leave them at auto");
    // llama.cpp's two-letter short option (CLI11 takes single letters after one dash).
    if (argument == "-np" || argument.rfind("-np=", 0) == 0) {
      arguments.push_back("--parallel" + argument.substr(3));
      is_value = argument == "-np";
      continue;
    }
    // -n=3 as --n-predict=3 would be read.
    if (argument.size() > 3 && argument[0] == '-' && std::isalpha(static_cast<unsigned char>(argument[1])) &&
        argument[2] == '=') {
      arguments.push_back(argument.substr(0, 2));
      arguments.push_back(argument.substr(3));
      continue;
    }
    arguments.push_back(argument);
    is_value = value_follows(app, argument);
  }
  std::reverse(arguments.begin(), arguments.end());  // CLI11 takes them last first
  try {
    // A repeated option takes its last value, as llama.cpp's do (scripts append overrides); the
    // numbers and sizes parsed here (each()) still check every value given, in order.
    for (CLI::Option* option : app.get_options())
      if (option->get_items_expected_max() == 1) option->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    app.parse(arguments);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return false;
  } catch (const CLI::ExtrasError& error) {
    // Options first: "--tmp 0" is an unknown option, not an unexpected '0'.
    std::istringstream extras(std::string(error.what()).substr(std::string(error.what()).find(": ") + 2));
    std::string word, option, argument;
    while (extras >> word) {
      if (word.size() > 1 && word[0] == '-' && option.empty()) option = word;
      if (argument.empty()) argument = word;
    }
    if (option.empty()) usage_error(app, "unexpected argument '" + argument + "'");
    const std::string name = option.substr(0, option.find('='));
    const std::string suggestion = closest_option(app, name);
    usage_error(app, "unknown option '" + name + "'" + (suggestion.empty() ? "" : " (did you mean '" + suggestion + "'?)"));
  } catch (const CLI::ArgumentMismatch& error) {
    usage_error(app, "option '" + option_in(error.what()) + "' needs a value");
  } catch (const CLI::ParseError& error) {
    usage_error(app, error.what());
  }
  LogLevel level = app.count("--verbose") > 0 ? LogLevel::Debug : LogLevel::Info;
  if (app.count("--log-level") > 0) {
    level = *parse_log_level(app["--log-level"]->as<std::string>());  // each value was checked as it was read
  }
  configure_logging(level, app.count("--log-file") > 0 ? app["--log-file"]->as<std::string>() : "");
  return true;
}

void require_option(const CLI::App& app, const std::string& name) {
  if (app.count(name) > 0) return;
  const CLI::Option* option = app.get_option(name);
  const std::string shown = option->get_snames().empty() ? name : "-" + option->get_snames().front();
  usage_error(app, "option '" + shown + "' is required");
}

CLI::Option* integer_option(CLI::App& app, const std::string& names, int64_t& value, int64_t low, int64_t high,
                            const std::string& help) {
  const std::string first = names.substr(0, names.find(','));
  return app.add_option(names, help)
      ->each(
          [&app, &value, first, low, high](const std::string& text) {
            char* end = nullptr;
            errno = 0;
            const long long parsed = std::strtoll(text.c_str(), &end, 10);
            if (text.empty() || *end != '\0' || errno == ERANGE)
              usage_error(app, "option '" + first + "' needs an integer, got '" + text + "'");
            if (parsed < low || parsed > high)
              usage_error(app, "option '" + first + "' = " + text + " is outside " + std::to_string(low) + ".." +
                                   std::to_string(high));
            value = parsed;
          })
      ->type_name("N");
}

CLI::Option* real_option(CLI::App& app, const std::string& names, double& value, double low, double high,
                         const std::string& help) {
  const std::string first = names.substr(0, names.find(','));
  return app.add_option(names, help)
      ->each(
          [&app, &value, first, low, high](const std::string& text) {
            char* end = nullptr;
            const double parsed = std::strtod(text.c_str(), &end);
            if (text.empty() || *end != '\0' || !std::isfinite(parsed))
              usage_error(app, "option '" + first + "' needs a number, got '" + text + "'");
            if (parsed < low || parsed > high)
              usage_error(app, "option '" + first + "' = " + text + " is outside " + strprintf("%g..%g", low, high));
            value = parsed;
          })
      ->type_name("X");
}

CLI::Option* size_option(CLI::App& app, const std::string& names, SizeChoice& value, std::initializer_list<const char*> words,
                         const std::string& help) {
  const std::string first = names.substr(0, names.find(','));
  std::vector<std::string> allowed(words.begin(), words.end());
  return app.add_option(names, help)
      ->each(
          [&app, &value, first, allowed](const std::string& text) {
            if (std::find(allowed.begin(), allowed.end(), text) != allowed.end()) {
              value = {text, std::nullopt};
              return;
            }
            const auto bytes = parse_byte_size(text);
            if (!bytes || *bytes == 0)
              usage_error(app, first + ": '" + text + "' is not a memory size (examples: 512M, 6G, 6.5GiB)");
            value = {"", bytes};
          })
      ->type_name("SIZE");
}

CLI::Option* checked_option(CLI::App& app, const std::string& names, std::string& value, ValueCheck problem,
                            const std::string& help) {
  const std::string first = names.substr(0, names.find(','));
  return app.add_option(names, help)->each([&app, &value, first, problem](const std::string& text) {
    const std::string wrong = problem(text);
    if (!wrong.empty()) usage_error(app, first + ": " + wrong);
    value = text;
  });
}

std::string joined(const std::vector<std::string>& names) {
  std::string list;
  for (const std::string& name : names) list += (list.empty() ? "" : ", ") + name;
  return list;
}

ValueCheck one_of(const std::vector<std::string>& names, const std::string& what) {
  return [names, what](const std::string& text) -> std::string {
    if (std::find(names.begin(), names.end(), text) != names.end()) return "";
    return "unknown " + what + " '" + text + "' (" + joined(names) + ")";
  };
}

void add_prompt_options(CLI::App& app, PromptArgs& prompt) {
  app.add_option("-p,--prompt", prompt.prompt, "prompt text ('-': read it from standard input)")->type_name("TEXT");
  app.add_option("-f,--file", prompt.file, "read the prompt from this file ('-': standard input)")->type_name("FILE");
  app.add_flag("-e,--escape", prompt.escapes, "process escapes in the prompt (\\n, \\t, \\\", \\\\, \\xHH)");
  app.add_flag("--parse-special", prompt.parse_special,
               "map special tokens written in the prompt (e.g. <|im_start|>, <s>) to their ids");
}

std::string prompt_text(const CLI::App& app, const PromptArgs& prompt) {
  const bool given_text = app.count("--prompt") > 0, given_file = app.count("--file") > 0;
  if (given_text && given_file) usage_error(app, "give the prompt with -p or with -f, not both");
  std::string text;
  if (given_text) {
    text = prompt.prompt == "-" ? read_all(std::cin) : prompt.prompt;
  } else if (given_file) {
    if (prompt.file == "-") {
      text = read_all(std::cin);
    } else {
      std::ifstream in(prompt.file, std::ios::binary);
      if (!in) fail("-f: cannot open '%s'", prompt.file.c_str());
      text = read_all(in);
    }
  }
  return prompt.escapes ? process_escapes(text) : text;
}

std::string process_escapes(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    const char next = text[++i];
    switch (next) {
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case '\\': case '\'': case '"': case '?': out += next; break;
      case 'x': {
        const auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
        if (i + 2 < text.size() && hex(text[i + 1]) && hex(text[i + 2])) {
          out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
          i += 2;
        } else {
          out += "\\x";
        }
        break;
      }
      default:
        if (next >= '0' && next <= '7') {
          int value = next - '0';
          for (int k = 0; k < 2 && i + 1 < text.size() && text[i + 1] >= '0' && text[i + 1] <= '7'; ++k) value = value * 8 + (text[++i] - '0');
          out += static_cast<char>(value & 0xFF);
        } else {
          out += '\\';
          out += next;
        }
    }
  }
  return out;
}

void add_engine_options(CLI::App& app, EngineArgs& engine) {
  app.add_option("-m,--model", engine.model, "GGUF model file")->type_name("FILE");
  integer_option(app, "-t,--threads", engine.threads, 1, 1024, "CPU threads (default: the cores this process may use)");
  integer_option(app, "-c,--ctx-size,--ctx", engine.context, 1, 1 << 24,
                 "context length in tokens (default: min(4096, trained), shortened to fit the host budget)");
  size_option(app, "--host-mem", engine.host_mem, {"auto", "none"},
              "host memory budget: a size (6G, 512M, 6.5GiB), auto (the default: every weight in RAM when the model "
              "fits 80% of the memory available or the memory cgroup's room, else streaming within it) or none (no "
              "limit)");
  size_option(app, "--gpu-mem", engine.gpu_mem, {"auto", "none"},
              "GPU memory budget: a size (12G), auto (the default: 90% of the free memory of CUDA device 0 when there "
              "is one, else the CPU) or none (the CPU)");
  app.add_option("--profile", engine.profile,
                 "a probe profile (JSON) to plan the GPU/host/disk placement with (default: this machine's cached one)")
      ->type_name("FILE");
  checked_option(app, "--io", engine.io, io_problem, "how streamed weights are read: auto, uring, pread or mmap (default auto)")
      ->type_name("BACKEND");
  app.add_option("--trace", engine.trace,
                 "write a Chrome/Perfetto trace (JSON) of reads, uploads and compute per layer to this file")
      ->type_name("FILE");
  checked_option(app, "--expert-policy", engine.expert_policy, expert_policy_problem,
                 "mixture of experts read on demand: which cached expert makes room, frequency (chosen least often "
                 "lately; the default) or recency (used longest ago)")
      ->type_name("POLICY");
  checked_option(app, "--expert-speculation", engine.expert_speculation, one_of({"auto", "on", "off"}, "setting"),
                 "mixture of experts read on demand: on reads the experts the next layer's router predicts while "
                 "this layer computes; auto (the default) measures decode with and without it as it runs and keeps "
                 "the faster, trying the other now and then; off reads only what was chosen")
      ->type_name("auto|on|off");
}

ReaderOptions reader_options(IoBackend backend) {
  ReaderOptions io;
  io.backend = backend;
  try {
    if (const auto profile = cached_profile()) {
      io.queue_depth = profile->disk_queue_depth;
      io.request_bytes = profile->disk_request_bytes;
    }
  } catch (const Error& error) {
    // A damaged cache must not stop generation: the defaults still work.
    log_warning("ignoring the cached profile (%s); run 'flexinfer probe' again", error.what());
  }
  return io;
}

EngineOptions engine_options(const CLI::App& app, const EngineArgs& engine) {
  require_option(app, "--model");
  EngineOptions options;
  options.model_path = engine.model;
  options.threads = static_cast<int>(engine.threads);
  if (options.threads > default_thread_count())
    log_warning("-t %d is more threads than the %d cores this process may use: they will share cores", options.threads,
                default_thread_count());
  options.context = engine.context;
  options.host_budget = engine.host_mem.bytes;
  options.auto_host_budget = engine.host_mem.word == "auto";
  options.gpu_budget = engine.gpu_mem.bytes;
  options.auto_gpu_budget = engine.gpu_mem.word == "auto";
  // --io and --expert-policy were checked as they were read (checked_option).
  options.io = reader_options(*parse_io_backend(engine.io));
  options.trace = engine.trace;
  options.experts.policy = *parse_expert_policy(engine.expert_policy);
  options.experts.speculate = engine.expert_speculation != "off";
  options.experts.measured = engine.expert_speculation == "auto";
  if (!engine.profile.empty()) options.profile = Profile::load(engine.profile);
  return options;
}

void add_sampling_options(CLI::App& app, SamplingArgs& sampling) {
  real_option(app, "--temp,--temperature", sampling.temperature, 0.0, 100.0, "temperature; 0 = greedy (default 0.8)");
  integer_option(app, "--top-k", sampling.top_k, 0, 1 << 22, "keep the k most likely tokens; 0 = off (default 40)");
  real_option(app, "--top-p", sampling.top_p, 0.0, 1.0, "nucleus sampling threshold; 1 = off (default 0.95)");
  real_option(app, "--min-p", sampling.min_p, 0.0, 1.0, "drop tokens below min-p x the top probability; 0 = off (default 0.05)");
  real_option(app, "--repeat-penalty", sampling.repeat_penalty, 0.0, 10.0, "penalty for recently seen tokens; 1 = off (default 1)");
  integer_option(app, "--repeat-last-n", sampling.repeat_last_n, 0, 1 << 20,
                 "how many recent tokens the penalties look at (default 64)");
  real_option(app, "--presence-penalty", sampling.presence_penalty, -2.0, 2.0,
              "subtracted from a recently seen token's logit; 0 = off (default)");
  real_option(app, "--frequency-penalty", sampling.frequency_penalty, -2.0, 2.0,
              "subtracted per occurrence of a recently seen token; 0 = off (default)");
  integer_option(app, "-s,--seed", sampling.seed, -1, INT64_MAX, "random seed; -1 = random (default)");
}

SamplerParams sampler_params(const SamplingArgs& s) {
  SamplerParams params;
  params.temperature = static_cast<float>(s.temperature);
  params.top_k = static_cast<int>(s.top_k);
  params.top_p = static_cast<float>(s.top_p);
  params.min_p = static_cast<float>(s.min_p);
  params.repeat_penalty = static_cast<float>(s.repeat_penalty);
  params.repeat_last_n = static_cast<int>(s.repeat_last_n);
  params.presence_penalty = static_cast<float>(s.presence_penalty);
  params.frequency_penalty = static_cast<float>(s.frequency_penalty);
  params.seed = s.seed >= 0 ? static_cast<uint64_t>(s.seed) : std::random_device{}();
  return params;
}

}  // namespace fi
