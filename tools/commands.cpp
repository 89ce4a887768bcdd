#include "tools/commands.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda/device_info.h"
#include "host/engine/engine.h"
#include "host/kernels/quant.h"
#include "host/text/unicode.h"
#include "io/error.h"
#include "io/gguf.h"
#include "planner/budget.h"
#include "planner/footprint.h"
#include "planner/profile.h"
#include "tools/args.h"
#include "tools/command_support.h"
#include "tools/model_maker.h"

namespace fi {

namespace {

std::atomic<bool> interrupted{false};

// Resident set size of this process, from /proc.
uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

std::string json_ids(const std::vector<int32_t>& ids) {
  std::string text = "[";
  for (size_t i = 0; i < ids.size(); ++i) text += (i ? ", " : "") + std::to_string(ids[i]);
  return text + "]";
}

}  // namespace

int command_generate(int argc, char** argv) {
  const Args args("generate",
                  {kModel, kPrompt, {{"-n", "--n-predict"}, true, "tokens to generate (default 128)"},
                   {{"--temp"}, true, "temperature; 0 = greedy (default 0.8)"},
                   {{"--top-k"}, true, "keep the k most likely tokens; 0 = off (default 40)"},
                   {{"--top-p"}, true, "nucleus sampling threshold; 1 = off (default 0.95)"},
                   {{"--min-p"}, true, "drop tokens below min-p x the top probability; 0 = off (default 0.05)"},
                   {{"--repeat-penalty"}, true, "penalty for recently seen tokens; 1 = off (default 1.0)"},
                   {{"--repeat-last-n"}, true, "how many recent tokens the penalty looks at (default 64)"},
                   {{"--seed"}, true, "random seed (default: random)"},
                   {{"--stats-every"}, true, "every N tokens, print speed and resident memory to stderr"},
                   {{"--ignore-eos"}, false, "do not stop at end-of-generation tokens (fixed-length runs)"},
                   kParseSpecial,
                   kThreads, kContext, kHostMem, kGpuMem, kProfile, kIo, kTrace},
                  argc, argv, 2);
  if (print_help(args)) return 0;
  no_positional(args, "generate");
  const int64_t stats_every = args.integer("--stats-every", 0, 1, 1 << 24);
  SamplerParams sampling;
  const int64_t max_tokens = args.integer("-n", 128, 0, 1 << 24);
  sampling.temperature = static_cast<float>(args.real("--temp", 0.8, 0.0, 100.0));
  sampling.top_k = static_cast<int>(args.integer("--top-k", 40, 0, 1 << 22));
  sampling.top_p = static_cast<float>(args.real("--top-p", 0.95, 0.0, 1.0));
  sampling.min_p = static_cast<float>(args.real("--min-p", 0.05, 0.0, 1.0));
  sampling.repeat_penalty = static_cast<float>(args.real("--repeat-penalty", 1.0, 0.0, 10.0));
  sampling.repeat_last_n = static_cast<int>(args.integer("--repeat-last-n", 64, 0, 1 << 20));
  sampling.seed = args.has("--seed") ? static_cast<uint64_t>(args.integer("--seed", 0, 0, INT64_MAX))
                                     : std::random_device{}();
  const std::string prompt_text = args.text("-p", "");

  Engine engine(engine_options(args));
  const Tokenizer& tokenizer = engine.tokenizer();
  show_placement(engine);
  const std::vector<int32_t> prompt = tokenizer.encode(prompt_text, tokenizer.adds_bos(), args.has("--parse-special"));
  Sampler sampler(sampling);
  // SentencePiece text starts with a space marker; drop it when the output starts the text.
  bool strip_space = prompt_text.empty() && tokenizer.strips_leading_space();
  std::string pending;
  // Ctrl-C ends generation after the current token: what was generated is printed, the engine
  // shuts down in order, and the exit status is 130. A second Ctrl-C kills at once.
  struct sigaction action {};
  action.sa_handler = [](int) { interrupted.store(true); };
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  int64_t generated = 0;
  auto last_report = std::chrono::steady_clock::now();
  const GenerationStats stats = engine.generate(prompt, max_tokens, sampler, [&](int32_t token) {
    if (stats_every > 0 && ++generated % stats_every == 0) {
      const auto now = std::chrono::steady_clock::now();
      std::fprintf(stderr, "\nflexinfer: %" PRId64 " tokens, %.2f tok/s, resident %s\n", generated,
                   static_cast<double>(stats_every) / std::chrono::duration<double>(now - last_report).count(),
                   format_bytes(resident_bytes()).c_str());
      last_report = now;
    }
    pending += tokenizer.piece(token);
    if (strip_space && !pending.empty()) {
      if (pending[0] == ' ') pending.erase(0, 1);
      strip_space = false;
    }
    const std::string ready = take_valid_utf8(pending);
    std::fwrite(ready.data(), 1, ready.size(), stdout);
    std::fflush(stdout);
  }, &interrupted, args.has("--ignore-eos"));
  // An unfinished UTF-8 sequence at the very end is shown as one replacement character.
  std::fputs(pending.empty() ? "\n" : "\xEF\xBF\xBD\n", stdout);
  std::fflush(stdout);
  std::fprintf(stderr,
               "flexinfer: load %.2f s | prompt %" PRId64 " tokens in %.3f s (%.1f tok/s) | generated %" PRId64
               " tokens in %.3f s (%.2f tok/s) | seed %" PRIu64 "%s\n",
               engine.load_seconds(), stats.prompt_tokens, stats.prompt_seconds,
               stats.prompt_seconds > 0 ? static_cast<double>(stats.prompt_tokens) / stats.prompt_seconds : 0.0,
               stats.generated_tokens, stats.generation_seconds,
               stats.generation_seconds > 0 ? static_cast<double>(stats.generated_tokens) / stats.generation_seconds : 0.0,
               sampling.seed, stats.stopped_at_end_of_generation ? " | stopped at end of text"
                              : stats.interrupted                ? " | interrupted"
                                                                 : "");
  write_trace(args, engine);
  return stats.interrupted ? 130 : 0;
}

int command_tokenize(int argc, char** argv) {
  const Args args("tokenize",
                  {kModel, kPrompt, {{"--no-bos"}, false, "do not prepend BOS"},
                   kParseSpecial},
                  argc, argv, 2);
  if (print_help(args)) return 0;
  no_positional(args, "tokenize");
  const GgufFile file = GgufFile::open(args.required_text("-m"));
  const auto tokenizer = Tokenizer::from_gguf(file);
  const std::vector<int32_t> ids =
      tokenizer->encode(args.required_text("-p"), !args.has("--no-bos") && tokenizer->adds_bos(), args.has("--parse-special"));
  for (int32_t id : ids) std::printf("%6d -> '%s'\n", id, tokenizer->text(id).c_str());
  std::printf("%s\n", json_ids(ids).c_str());
  return 0;
}

int command_logits(int argc, char** argv) {
  const Args args("logits", {kModel, kPrompt, {{"-o", "--output"}, true, "output file (float32, one row per position)"},
                             kParseSpecial, kThreads, kContext, kHostMem, kGpuMem, kProfile, kIo, kTrace},
                  argc, argv, 2);
  if (print_help(args)) return 0;
  no_positional(args, "logits");
  const std::string output = args.required_text("-o");
  const std::string prompt_text = args.text("-p", "");
  Engine engine(engine_options(args));
  const std::vector<int32_t> ids = engine.tokenizer().encode(prompt_text, engine.tokenizer().adds_bos(), args.has("--parse-special"));
  if (ids.empty()) fail("logits: nothing to evaluate (empty prompt and no BOS token)");
  const auto vocab = static_cast<size_t>(engine.config().vocab);
  std::vector<float> logits(ids.size() * vocab);
  engine.forward().eval(ids, logits.data(), true);
  std::ofstream out(output, std::ios::binary);
  out.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
  out.close();
  if (!out) fail("logits: cannot write '%s'", output.c_str());
  write_trace(args, engine);
  std::printf("%s\n", json_ids(ids).c_str());
  return 0;
}

int command_inspect(int argc, char** argv) {
  const Args args("inspect", {}, argc, argv, 2);
  if (print_help(args)) {
    std::puts("usage: flexinfer inspect MODEL.gguf");
    return 0;
  }
  if (args.positional().size() != 1) fail("inspect: expected one GGUF file (usage: flexinfer inspect MODEL.gguf)");
  const GgufFile file = GgufFile::open(args.positional()[0]);
  std::printf("file: %s\nGGUF version %u, %s, alignment %" PRIu64 ", data at offset %" PRIu64 "\n\n",
              file.path().c_str(), file.version(), format_bytes(file.file_size()).c_str(), file.alignment(),
              file.data_offset());
  std::printf("metadata (%zu keys):\n", file.metadata().size());
  for (const auto& [key, value] : file.metadata())
    std::printf("  %-44s %-6s %s\n", key.c_str(), gguf_type_name(value.type), value.summary().c_str());

  const TensorTable& table = file.tensors();
  std::printf("\ntensors (%zu, %s):\n", table.all().size(), format_bytes(table.total_bytes()).c_str());
  std::printf("  %-32s %-5s %-20s %14s %12s\n", "name", "type", "shape", "offset", "bytes");
  for (const TensorInfo& t : table.all())
    std::printf("  %-32s %-5s %-20s %14" PRIu64 " %12" PRIu64 "\n", t.name.c_str(), type_name(t.type),
                t.shape_string().c_str(), t.file_offset, t.bytes);
  if (table.all().empty()) return 0;

  const ModelFootprint footprint = ModelFootprint::of(table);
  std::printf("\nbytes per layer:\n  %-6s %12s %12s %10s %12s\n", "layer", "attention", "ffn", "norms", "total");
  for (size_t l = 0; l < footprint.layers.size(); ++l) {
    const auto& layer = footprint.layers[l];
    std::printf("  %-6zu %12" PRIu64 " %12" PRIu64 " %10" PRIu64 " %12" PRIu64 "\n", l, layer.attention_bytes,
                layer.ffn_bytes, layer.norm_bytes, layer.total());
  }
  std::printf("\nbytes per tensor group:\n");
  std::printf("  %-20s %14" PRIu64 "  (%s)\n", "token_embd", footprint.embedding_bytes, format_bytes(footprint.embedding_bytes).c_str());
  for (const auto& [group, bytes] : footprint.by_group)
    std::printf("  %-20s %14" PRIu64 "  (%s)\n", group.c_str(), bytes, format_bytes(bytes).c_str());
  std::printf("  %-20s %14" PRIu64 "  (%s)\n", "output", footprint.output_bytes, format_bytes(footprint.output_bytes).c_str());
  if (footprint.other_bytes) std::printf("  %-20s %14" PRIu64 "\n", "other", footprint.other_bytes);
  std::printf("  %-20s %14" PRIu64 "  (%s)\n", "total", footprint.total(), format_bytes(footprint.total()).c_str());
  return 0;
}

int command_make_model(int argc, char** argv) {
  const Args args("make-model",
                  {{{"--preset"}, true, "a shape: micro, tiny, 1b, 7b, 13b, 70b, llama3.2-1b, llama3.1-8b, mistral-nemo-12b, "
                                        "qwen2.5-1.5b, qwen2.5-7b, qwen3-1.7b, qwen3-8b, tiny-llama3, tiny-qwen2 or "
                                        "tiny-qwen3"},
                   {{"--arch"}, true, "llama, qwen2 or qwen3 (default: the preset's)"},
                   {{"--type"}, true, "f32, f16, q8_0, q4_0, q4_k, q4_k_m or q6_k"},
                   {{"--vocab"}, true, "copy the tokenizer of this GGUF file"},
                   {{"--byte-vocab"}, false, "use a self-contained byte-level vocabulary"},
                   {{"--seed"}, true, "random seed (default 1)"},
                   {{"-o", "--output"}, true, "output GGUF file"},
                   kThreads},
                  argc, argv, 2);
  if (print_help(args)) return 0;
  no_positional(args, "make-model");
  MakeModelOptions options;
  const std::string preset = args.required_text("--preset");
  const auto shape = find_preset(preset);
  if (!shape) {
    std::string names;
    for (const std::string& name : preset_names()) names += (names.empty() ? "" : ", ") + name;
    fail("make-model: unknown preset '%s' (%s)", preset.c_str(), names.c_str());
  }
  options.shape = *shape;
  if (args.has("--arch")) options.shape = with_architecture(*shape, args.text("--arch", ""));
  const std::string type = args.required_text("--type");
  const auto scheme = parse_weight_scheme(type);
  if (!scheme) fail("make-model: unknown type '%s' (f32, f16, q8_0, q4_0, q4_k, q4_k_m, q6_k)", type.c_str());
  options.scheme = *scheme;
  if (args.has("--vocab") == args.has("--byte-vocab"))
    fail("make-model: give exactly one of --vocab FILE or --byte-vocab");
  options.vocab_path = args.text("--vocab", "");
  options.seed = static_cast<uint64_t>(args.integer("--seed", 1, 0, INT64_MAX));
  options.output_path = args.required_text("-o");
  ThreadPool pool(static_cast<int>(args.integer("-t", default_thread_count(), 1, 1024)));
  const uint64_t bytes = make_model(options, pool);
  std::printf("wrote %s (%s)\n", options.output_path.c_str(), format_bytes(bytes).c_str());
  return 0;
}

int command_devices(int argc, char** argv) {
  const Args args("devices", {}, argc, argv, 2);
  if (print_help(args)) return 0;
  no_positional(args, "devices");
  std::string why;
  const auto devices = cuda::list_devices(&why);
  if (devices.empty()) {
    std::printf("%s\n", why.c_str());
    return 0;
  }
  for (const cuda::DeviceInfo& d : devices)
    std::printf("cuda:%d  %s  compute %d.%d  %d SMs  %s total, %s free\n", d.index, d.name.c_str(), d.compute_major,
                d.compute_minor, d.multiprocessors, format_bytes(d.total_bytes).c_str(), format_bytes(d.free_bytes).c_str());
  return 0;
}

}  // namespace fi
