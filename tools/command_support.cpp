#include "tools/command_support.h"

#include <cstdio>
#include <fstream>

#include "io/error.h"
#include "planner/budget.h"
#include "planner/profile.h"

namespace fi {

const OptionSpec kModel{{"-m", "--model"}, true, "GGUF model file"};
const OptionSpec kPrompt{{"-p", "--prompt"}, true, "prompt text"};
const OptionSpec kParseSpecial{{"--parse-special"}, false,
                               "map special tokens written in the prompt (e.g. <|im_start|>, <s>) to their ids"};
const OptionSpec kThreads{{"-t", "--threads"}, true, "CPU threads (default: all cores)"};
const OptionSpec kContext{{"--ctx", "-c"}, true, "context length in tokens (default: min(4096, trained))"};
const OptionSpec kHostMem{{"--host-mem"}, true,
                          "host memory budget, e.g. 6G, 512M, 6.5GiB (default: load every weight, no limit)"};
const OptionSpec kGpuMem{{"--gpu-mem"}, true,
                         "GPU memory budget, e.g. 12G: run on CUDA device 0, what does not fit in host memory and on "
                         "disk (default: the CPU)"};
const OptionSpec kProfile{{"--profile"}, true,
                          "a probe profile (JSON) to plan the GPU/host/disk placement with (default: this machine's "
                          "cached one)"};
const OptionSpec kTrace{{"--trace"}, true,
                        "write a Chrome/Perfetto trace (JSON) of reads, uploads and compute per layer to this file"};
const OptionSpec kIo{{"--io"}, true, "how streamed weights are read: auto, uring, pread or mmap (default auto)"};

bool print_help(const Args& args) {
  if (args.help_requested()) std::fputs(args.usage().c_str(), stdout);
  return args.help_requested();
}

void no_positional(const Args& args, const char* command) {
  if (!args.positional().empty())
    fail("%s: unexpected argument '%s' (see 'flexinfer %s --help')", command, args.positional()[0].c_str(), command);
}

void show_placement(Engine& engine) {
  if (engine.on_gpu()) {
    if (const auto& tiers = engine.tiers()) {
      uint64_t vram_weights = 0;
      for (const TierUnit& unit : tiers->units) vram_weights += unit.gpu_bytes();
      const int cpu_layers = tiers->cpu_layers();
      const std::string devices =
          cpu_layers == 0 ? std::string("every layer on the GPU")
                          : strprintf("layers 0-%lld on the GPU, %lld-%lld decoded on the CPU (prefilled on the GPU)",
                                      static_cast<long long>(engine.config().n_layers - cpu_layers - 1),
                                      static_cast<long long>(engine.config().n_layers - cpu_layers),
                                      static_cast<long long>(engine.config().n_layers - 1));
      std::fprintf(stderr,
                   "flexinfer: %s; weights split: %s in VRAM, %s in pinned host memory, %s read from disk per token "
                   "(%s of %s GPU budget, %s host memory); planned %.1f tok/s, bound by %s\n",
                   devices.c_str(), format_bytes(vram_weights).c_str(), format_bytes(tiers->host_weight_bytes).c_str(),
                   format_bytes(tiers->disk_bytes_per_token()).c_str(), format_bytes(tiers->gpu_used()).c_str(),
                   format_bytes(tiers->gpu_budget).c_str(), format_bytes(tiers->host_used()).c_str(),
                   tiers->predicted_decode_tok_s, tiers->bound.c_str());
      if (engine.tier_profile()->machine == kNominalProfile)
        std::fprintf(stderr, "flexinfer: note: planned with nominal bandwidths; run 'flexinfer probe' once (or pass "
                             "--profile FILE) for a placement fitted to this machine\n");
      return;
    }
    std::fprintf(stderr, "flexinfer: every layer on the GPU: %s of %s budget on the device\n",
                 format_bytes(engine.gpu_memory().total()).c_str(), format_bytes(*engine.options().gpu_budget).c_str());
    return;
  }
  const Plan& plan = engine.host_model()->plan();
  if (!plan.streams()) return;
  std::fprintf(stderr, "flexinfer: %s of %s weights resident, %s streamed per token (%s)\n",
               format_bytes(plan.resident_bytes()).c_str(), format_bytes(plan.weight_bytes()).c_str(),
               format_bytes(plan.read_bytes_per_token()).c_str(), engine.host_model()->store().reader().describe().c_str());
}

namespace {
std::optional<uint64_t> budget_option(const Args& args, const char* name) {
  if (!args.has(name)) return std::nullopt;
  const std::string text = args.text(name, "");
  const auto bytes = parse_byte_size(text);
  if (!bytes || *bytes == 0) fail("%s: '%s' is not a memory size (examples: 512M, 6G, 6.5GiB)", name, text.c_str());
  return bytes;
}
}  // namespace

std::optional<uint64_t> host_budget(const Args& args) { return budget_option(args, "--host-mem"); }
std::optional<uint64_t> gpu_budget(const Args& args) { return budget_option(args, "--gpu-mem"); }

// The disk settings probe measured, when it has run on this machine.
ReaderOptions reader_options(const Args& args) {
  ReaderOptions io;
  const std::string backend = args.text("--io", "auto");
  const auto parsed = parse_io_backend(backend);
  if (!parsed) fail("--io: unknown backend '%s' (auto, uring, pread, mmap)", backend.c_str());
  io.backend = *parsed;
  try {
    if (const auto profile = cached_profile()) {
      io.queue_depth = profile->disk_queue_depth;
      io.request_bytes = profile->disk_request_bytes;
    }
  } catch (const Error& error) {
    // A damaged cache must not stop generation: the defaults still work.
    std::fprintf(stderr, "flexinfer: warning: ignoring the cached profile (%s); run 'flexinfer probe' again\n", error.what());
  }
  return io;
}

EngineOptions engine_options(const Args& args) {
  EngineOptions options;
  options.model_path = args.required_text("-m");
  options.threads = static_cast<int>(args.integer("-t", 0, 1, 1024));
  options.context = args.integer("--ctx", 0, 1, 1 << 24);
  options.host_budget = host_budget(args);
  options.gpu_budget = gpu_budget(args);
  options.io = reader_options(args);
  options.trace = args.has("--trace");
  if (args.has("--profile")) options.profile = Profile::load(args.text("--profile", ""));
  return options;
}

void write_trace(const Args& args, const Engine& engine) {
  if (args.has("--trace") && engine.trace()) engine.trace()->write(args.text("--trace", ""));
}

void write_json(const std::string& path, const nlohmann::json& json, const char* command) {
  std::ofstream out(path);
  out << json.dump(2) << "\n";
  out.close();
  if (!out) fail("%s: cannot write '%s'", command, path.c_str());
}

std::optional<Profile> chosen_profile(const Args& args) {
  if (args.has("--profile")) return Profile::load(args.text("--profile", ""));
  return cached_profile();
}

uint64_t compute_bytes_per_token(const Plan& plan, const Model& model) {
  return plan.weight_bytes() +
         row_bytes(model.tensors().global(Role::TokenEmbedding)->type, static_cast<uint64_t>(model.config().dim));
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace fi
