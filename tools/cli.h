#pragma once
// The command line, parsed by CLI11, with llama.cpp's names and aliases where the meaning is the
// same (-m, -p, -f, -e, -n, -c/--ctx-size, -s/--seed, --temp/--temperature, -t). Every option is
// checked as it is read; a usage error is one line naming the option (and the likely one, for an
// unknown option) and exits with status 2.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "host/engine/engine.h"
#include "host/text/sampler.h"
#include "io/error.h"

namespace fi {

// A mistake in the command line: exit status 2 (failures are 1, Ctrl-C 130).
class UsageError : public Error {
 public:
  using Error::Error;
};

// An app for `flexinfer COMMAND` with the options every command takes: -h/--help, -v/--verbose,
// --log-level, --log-file.
std::unique_ptr<CLI::App> command_app(const std::string& command, const std::string& description);
// Parses argv[first..] and sets up logging; false when help was printed. `-X=VALUE` works for
// short options too; llama.cpp's -ngl is answered with what flexinfer takes instead.
bool parse_command_line(CLI::App& app, int argc, char** argv, int first);
// UsageError unless `option` was given ("option '-m' is required").
void require_option(const CLI::App& app, const std::string& name);

// Options whose values are checked as they are read: an integer or number within [low, high].
CLI::Option* integer_option(CLI::App& app, const std::string& names, int64_t& value, int64_t low, int64_t high,
                            const std::string& help);
CLI::Option* real_option(CLI::App& app, const std::string& names, double& value, double low, double high,
                         const std::string& help);
// A memory size as users write them (512M, 6G, 6.5GiB), or one of the given words.
struct SizeChoice {
  std::string word;              // "auto", "none", ... when one was given
  std::optional<uint64_t> bytes;  // when a size was given
};
CLI::Option* size_option(CLI::App& app, const std::string& names, SizeChoice& value, std::initializer_list<const char*> words,
                         const std::string& help);

// A text option: `problem` says what is wrong with a value ("" when nothing is). Every value given
// is checked in order, so a bad one is a usage error even when a later one would override it.
using ValueCheck = std::function<std::string(const std::string&)>;
CLI::Option* checked_option(CLI::App& app, const std::string& names, std::string& value, ValueCheck problem,
                            const std::string& help);
// "a, b, c": the names a help text or a message lists.
std::string joined(const std::vector<std::string>& names);
// The check for a value that must be one of `names` ("unknown WHAT 'x' (a, b, c)").
ValueCheck one_of(const std::vector<std::string>& names, const std::string& what);

// -p TEXT / -p - (stdin), -f FILE / -f - (stdin), -e (escapes), --parse-special.
struct PromptArgs {
  std::string prompt;
  std::string file;
  bool escapes = false;
  bool parse_special = false;
};
void add_prompt_options(CLI::App& app, PromptArgs& prompt);
// The prompt's text (empty when neither -p nor -f was given).
std::string prompt_text(const CLI::App& app, const PromptArgs& prompt);
// \n \r \t \\ \' \" \xHH and \NNN (octal) turned into the bytes they stand for, as llama.cpp's -e.
std::string process_escapes(const std::string& text);

// -m, -t, -c/--ctx-size, --host-mem, --gpu-mem, --profile, --io, --trace.
struct EngineArgs {
  std::string model;
  int64_t threads = 0;
  int64_t context = 0;
  SizeChoice host_mem{"auto", std::nullopt};
  SizeChoice gpu_mem{"auto", std::nullopt};
  std::string profile;
  std::string io = "auto";
  std::string trace;
  std::string expert_policy = "frequency";
  std::string expert_speculation = "auto";
};
void add_engine_options(CLI::App& app, EngineArgs& engine);
// The engine's options; warns once when -t asks for more threads than the machine has cores.
EngineOptions engine_options(const CLI::App& app, const EngineArgs& engine);
// --io's backend, with the queue depth and request size probe measured on this machine (when it
// has run).
ReaderOptions reader_options(IoBackend backend);

// --temp/--temperature, --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n,
// --presence-penalty, --frequency-penalty, -s/--seed (-1: random).
struct SamplingArgs {
  double temperature = 0.8;
  int64_t top_k = 40;
  double top_p = 0.95;
  double min_p = 0.05;
  double repeat_penalty = 1.0;
  int64_t repeat_last_n = 64;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  int64_t seed = -1;
};
void add_sampling_options(CLI::App& app, SamplingArgs& sampling);
SamplerParams sampler_params(const SamplingArgs& sampling);

}  // namespace fi
