#pragma once
// Options and helpers the subcommands share.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "host/engine/engine.h"
#include "host/text/tokenizer.h"
#include "io/async_reader.h"
#include "planner/plan.h"
#include "planner/profile.h"
#include "tools/args.h"

namespace fi {

extern const OptionSpec kModel, kPrompt, kParseSpecial, kThreads, kContext, kHostMem, kGpuMem, kProfile, kIo, kTrace;

// Prints the usage when --help was given; true then.
bool print_help(const Args& args);
void no_positional(const Args& args, const char* command);
// One stderr line on where the weights live, when a budget makes the engine stream.
void show_placement(Engine& engine);
// --host-mem / --gpu-mem, parsed; none when absent.
std::optional<uint64_t> host_budget(const Args& args);
std::optional<uint64_t> gpu_budget(const Args& args);
// --io, with the queue depth and request size probe measured on this machine (when it has run).
ReaderOptions reader_options(const Args& args);
// -m, -t, --ctx, --host-mem, --gpu-mem, --io, --trace.
EngineOptions engine_options(const Args& args);
// Writes the engine's spans to the --trace file, when one was asked for.
void write_trace(const Args& args, const Engine& engine);
// Writes `json` to `path` (one error line naming `command` when it cannot).
void write_json(const std::string& path, const nlohmann::json& json, const char* command);
// The profile to predict with: --profile FILE, else the one probe cached, else none.
std::optional<Profile> chosen_profile(const Args& args);
// Weight bytes the CPU reads per decoded token under a host plan: every planned matrix plus one
// embedding row.
uint64_t compute_bytes_per_token(const Plan& plan, const Model& model);
double seconds_since(std::chrono::steady_clock::time_point start);

}  // namespace fi
