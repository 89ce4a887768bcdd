#pragma once
// Options and helpers the subcommands share.
#include <cstdint>
#include <optional>

#include "host/engine/engine.h"
#include "host/text/tokenizer.h"
#include "io/async_reader.h"
#include "tools/args.h"

namespace fi {

extern const OptionSpec kModel, kPrompt, kThreads, kContext, kHostMem, kGpuMem, kProfile, kIo, kTrace;

// Prints the usage when --help was given; true then.
bool print_help(const Args& args);
void no_positional(const Args& args, const char* command);
void show_caveat(const Tokenizer& tokenizer);
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

}  // namespace fi
