#include "tools/commands.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
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
#include "io/stack_experts.h"
#include "planner/budget.h"
#include "planner/footprint.h"
#include "planner/profile.h"
#include "io/log.h"
#include "tools/cli.h"
#include "tools/command_support.h"
#include "tools/model_maker.h"

namespace fi {

namespace {

std::atomic<bool> interrupted{false};

// SIGINT and SIGTERM set `interrupted` once; a second one acts as it would have.
void catch_interrupts() {
  struct sigaction action {};
  action.sa_handler = [](int) { interrupted.store(true); };
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

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
  const auto app = command_app("generate", "Generate text from a prompt; the text is written to standard output as it is made.");
  EngineArgs engine_args;
  PromptArgs prompt_args;
  SamplingArgs sampling_args;
  int64_t max_tokens = 128, stats_every = 0;
  bool ignore_eos = false;
  add_engine_options(*app, engine_args);
  add_prompt_options(*app, prompt_args);
  integer_option(*app, "-n,--n-predict", max_tokens, -1, 1 << 24,
                 "tokens to generate; -1 = until an end-of-generation token or the context is full (default 128)");
  add_sampling_options(*app, sampling_args);
  integer_option(*app, "--stats-every", stats_every, 1, 1 << 24, "every N tokens, log speed and resident memory");
  app->add_flag("--ignore-eos", ignore_eos, "do not stop at end-of-generation tokens (fixed-length runs)");
  if (!parse_command_line(*app, argc, argv, 2)) return 0;
  const EngineOptions options = engine_options(*app, engine_args);
  const std::string prompt_text = fi::prompt_text(*app, prompt_args);
  const SamplerParams sampling = sampler_params(sampling_args);

  Engine engine(options);
  const Tokenizer& tokenizer = engine.tokenizer();
  show_placement(engine);
  const std::vector<int32_t> prompt = tokenizer.encode(prompt_text, tokenizer.adds_bos(), prompt_args.parse_special);
  if (max_tokens < 0) max_tokens = std::max<int64_t>(0, engine.forward().context() - static_cast<int64_t>(prompt.size()));
  Sampler sampler(sampling);
  // SentencePiece text starts with a space marker; drop it when the output starts the text.
  bool strip_space = prompt_text.empty() && tokenizer.strips_leading_space();
  std::string pending;
  // Ctrl-C (or SIGTERM) ends generation after the current token: what was generated is printed, the
  // engine shuts down in order, and the exit status is 130. A second one kills at once.
  catch_interrupts();
  int64_t generated = 0;
  auto last_report = std::chrono::steady_clock::now();
  const GenerationStats stats = engine.generate(prompt, max_tokens, sampler, [&](int32_t token) {
    if (stats_every > 0 && ++generated % stats_every == 0) {
      const auto now = std::chrono::steady_clock::now();
      log_info("%" PRId64 " tokens, %.2f tok/s, resident %s", generated,
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
  }, &interrupted, ignore_eos);
  // An unfinished UTF-8 sequence at the very end is shown as one replacement character.
  std::fputs(pending.empty() ? "\n" : "\xEF\xBF\xBD\n", stdout);
  std::fflush(stdout);
  // The summary is the command's own report, not a diagnostic: shown at every log level.
  std::fprintf(stderr,
               "flexinfer: load %.2f s | prompt %" PRId64 " tokens in %.3f s (%.1f tok/s) | generated %" PRId64
               " tokens in %.3f s (%.2f tok/s) | seed %" PRIu64 "%s\n",
               engine.load_seconds(), stats.prompt_tokens, stats.prompt_seconds,
               stats.prompt_seconds > 0 ? static_cast<double>(stats.prompt_tokens) / stats.prompt_seconds : 0.0,
               stats.generated_tokens, stats.generation_seconds,
               stats.generation_seconds > 0 ? static_cast<double>(stats.generated_tokens) / stats.generation_seconds : 0.0,
               sampling.seed, stats.stopped_at_end_of_generation ? " | stopped at end of generation"
                              : stats.interrupted                ? " | interrupted"
                                                                 : "");
  if (const ExpertCache* experts = engine.host_model() ? engine.host_model()->store().expert_cache() : nullptr) {
    const ExpertCacheStats cache = experts->stats();
    std::fprintf(stderr, "flexinfer: experts %.1f%% found in RAM (%" PRIu64 " of %" PRIu64 " uses), %s read from disk\n",
                 cache.uses ? 100.0 * static_cast<double>(cache.hits) / static_cast<double>(cache.uses) : 0.0, cache.hits,
                 cache.uses, format_bytes(cache.bytes_read).c_str());
    if (cache.speculative_reads > 0)
      std::fprintf(stderr, "flexinfer: %" PRIu64 " experts read ahead on a prediction, %.1f%% of them then chosen\n",
                   cache.speculative_reads,
                   100.0 * static_cast<double>(cache.speculative_used) / static_cast<double>(cache.speculative_reads));
  }
  if (const ExpertAssist* vram = engine.gpu_expert_cache()) {
    const ExpertAssistStats cache = vram->stats();
    std::fprintf(stderr,
                 "flexinfer: %" PRIu64 " expert uses computed on the GPU (%" PRIu64 " found in VRAM), %" PRIu64
                 " experts uploaded (%s)\n",
                 cache.uses, cache.hits, cache.uploads, format_bytes(cache.upload_bytes).c_str());
  }
  finish_trace(engine);
  return stats.interrupted ? 130 : 0;
}

int command_tokenize(int argc, char** argv) {
  const auto app = command_app("tokenize", "Show the token ids of a text (works on vocabulary-only files too).");
  std::string model;
  PromptArgs prompt_args;
  bool no_bos = false;
  app->add_option("-m,--model", model, "GGUF model or vocabulary file")->type_name("FILE");
  add_prompt_options(*app, prompt_args);
  app->add_flag("--no-bos", no_bos, "do not prepend BOS");
  if (!parse_command_line(*app, argc, argv, 2)) return 0;
  require_option(*app, "--model");
  if (app->count("--prompt") + app->count("--file") == 0) require_option(*app, "--prompt");
  const std::string text = prompt_text(*app, prompt_args);
  const GgufFile file = GgufFile::open(model);
  const auto tokenizer = Tokenizer::from_gguf(file);
  const std::vector<int32_t> ids = tokenizer->encode(text, !no_bos && tokenizer->adds_bos(), prompt_args.parse_special);
  for (int32_t id : ids) std::printf("%6d -> '%s'\n", id, tokenizer->text(id).c_str());
  std::printf("%s\n", json_ids(ids).c_str());
  return 0;
}

int command_logits(int argc, char** argv) {
  const auto app = command_app("logits", "Write the logits of every prompt position to a file (float32, one row per position).");
  EngineArgs engine_args;
  PromptArgs prompt_args;
  std::string output;
  add_engine_options(*app, engine_args);
  add_prompt_options(*app, prompt_args);
  app->add_option("-o,--output", output, "output file")->type_name("FILE");
  if (!parse_command_line(*app, argc, argv, 2)) return 0;
  require_option(*app, "--output");
  const EngineOptions options = engine_options(*app, engine_args);
  const std::string prompt_text = fi::prompt_text(*app, prompt_args);
  Engine engine(options);
  const std::vector<int32_t> ids =
      engine.tokenizer().encode(prompt_text, engine.tokenizer().adds_bos(), prompt_args.parse_special);
  if (ids.empty()) fail("logits: nothing to evaluate (empty prompt and no BOS token)");
  const auto vocab = static_cast<size_t>(engine.config().vocab);
  std::vector<float> logits(ids.size() * vocab);
  engine.forward().eval(ids, logits.data(), true);
  std::ofstream out(output, std::ios::binary);
  out.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
  out.close();
  if (!out) fail("logits: cannot write '%s'", output.c_str());
  finish_trace(engine);
  std::printf("%s\n", json_ids(ids).c_str());
  return 0;
}

int command_inspect(int argc, char** argv) {
  const auto app = command_app("inspect", "Show a GGUF file's metadata, tensors and bytes per layer (any architecture).");
  std::string path;
  app->add_option("model", path, "GGUF file")->type_name("FILE");
  if (!parse_command_line(*app, argc, argv, 2)) return 0;
  if (app->count("model") == 0) throw UsageError("inspect: expected one GGUF file (usage: flexinfer inspect MODEL.gguf)");
  const GgufFile file = GgufFile::open(path);
  std::printf("file: %s\nGGUF version %u, %s, alignment %" PRIu64 ", data at offset %" PRIu64 "\n\n",
              file.path().c_str(), file.version(), format_bytes(file.file_size()).c_str(), file.alignment(),
              file.data_offset());
  std::printf("metadata (%zu keys):\n", file.metadata().size());
  for (const auto& [key, value] : file.metadata())
    std::printf("  %-44s %-6s %s\n", key.c_str(), gguf_type_name(value.type), value.summary().c_str());

  try {
    if (const ModelConfig config = ModelConfig::from_gguf(file); config.has_experts())
      std::printf("\nmixture of experts: %s\n", config.experts_description().c_str());
  } catch (const Error&) {
    // A file flexinfer cannot run is still shown in full; its metadata above says what it holds.
  }
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

int command_stack_experts(int argc, char** argv) {
  const auto app = command_app("stack-experts",
                               "Rewrite a GGUF whose experts are one tensor each (blk.N.ffn_gate.E.weight, older Mixtral "
                               "conversions) with each layer's experts stacked (blk.N.ffn_gate_exps.weight), as flexinfer "
                               "and current llama.cpp read them; every byte is copied, nothing requantized.");
  std::string input, output;
  app->add_option("model", input, "GGUF file with per-expert tensors")->type_name("FILE");
  app->add_option("-o,--output", output, "the stacked GGUF file to write")->type_name("FILE");
  if (!parse_command_line(*app, argc, argv, 2)) return 0;
  if (app->count("model") == 0)
    throw UsageError("stack-experts: expected one GGUF file (usage: flexinfer stack-experts MODEL.gguf -o NEW.gguf)");
  require_option(*app, "--output");
  // Ctrl-C stops the copy between two pieces; the unfinished file (tens of GB for a Mixtral) is removed.
  catch_interrupts();
  StackedExperts stacked;
  try {
    stacked = stack_experts(input, output, &interrupted);
  } catch (const Error& error) {
    if (!interrupted.load()) throw;
    std::fprintf(stderr, "flexinfer: %s\n", error.what());
    return 130;
  }
  std::printf("%s: %lld expert tensors stacked into %lld, %s\n", output.c_str(),
              static_cast<long long>(stacked.expert_tensors), static_cast<long long>(stacked.stacked_tensors),
              format_bytes(stacked.output_bytes).c_str());
  return 0;
}

int command_make_model(int argc, char** argv) {
  const auto app = command_app("make-model", "Write a random-weight GGUF of a realistic shape (for tests and benchmarks).");
  std::string preset, arch, type, vocab, output;
  bool byte_vocab = false;
  int64_t seed = 1, threads = default_thread_count();
  double router_skew = 0.0;
  checked_option(*app, "--preset", preset, one_of(preset_names(), "preset"), "a shape: " + joined(preset_names()))
      ->type_name("NAME");
  checked_option(*app, "--arch", arch, architecture_problem, architecture_names() + " (default: the preset's)")
      ->type_name("ARCH");
  checked_option(*app, "--type", type, one_of(weight_scheme_names(), "type"), joined(weight_scheme_names()))
      ->type_name("TYPE");
  std::vector<std::string> tensor_types;
  app->add_option("--tensor-type", tensor_types,
                  "every tensor NAME in TYPE, whatever --type chooses, e.g. ffn_up_exps=q8_0 (repeatable)")
      ->type_name("NAME=TYPE");
  real_option(*app, "--router-skew", router_skew, 0.0, 16.0,
              "experts: 0 = uniform routing, larger = some experts chosen more often (default: the preset's)");
  app->add_option("--vocab", vocab, "copy the tokenizer of this GGUF file")->type_name("FILE");
  app->add_flag("--byte-vocab", byte_vocab, "use a self-contained byte-level vocabulary");
  integer_option(*app, "-s,--seed", seed, 0, INT64_MAX, "random seed (default 1)");
  app->add_option("-o,--output", output, "output GGUF file")->type_name("FILE");
  integer_option(*app, "-t,--threads", threads, 1, 1024, "CPU threads (default: all cores)");
  if (!parse_command_line(*app, argc, argv, 2)) return 0;
  require_option(*app, "--preset");
  require_option(*app, "--type");
  require_option(*app, "--output");
  MakeModelOptions options;
  options.shape = *find_preset(preset);  // --preset and --type were checked as they were read
  if (app->count("--arch") > 0) options.shape = with_architecture(options.shape, arch);
  if (app->count("--router-skew") > 0) {
    if (options.shape.n_experts == 0) throw UsageError("make-model: --router-skew is for models with experts");
    options.shape.router_skew = router_skew;
  }
  options.scheme = *parse_weight_scheme(type);
  for (const std::string& text : tensor_types) {
    std::string problem;
    const auto chosen = parse_tensor_type_override(text, &problem);
    if (!chosen) throw UsageError("make-model: --tensor-type " + problem);
    options.tensor_types.push_back(*chosen);
  }
  if ((app->count("--vocab") > 0) == byte_vocab) throw UsageError("make-model: give exactly one of --vocab FILE or --byte-vocab");
  options.vocab_path = vocab;
  options.seed = static_cast<uint64_t>(seed);
  options.output_path = output;
  ThreadPool pool(static_cast<int>(threads));
  // Ctrl-C stops the writing between two chunks; the unfinished file (up to hundreds of GB) is removed.
  catch_interrupts();
  options.stop = &interrupted;
  uint64_t bytes = 0;
  try {
    bytes = make_model(options, pool);
  } catch (const Error& error) {
    if (!interrupted.load()) throw;
    std::fprintf(stderr, "flexinfer: %s\n", error.what());
    return 130;
  }
  std::printf("wrote %s (%s)\n", options.output_path.c_str(), format_bytes(bytes).c_str());
  return 0;
}

int command_devices(int argc, char** argv) {
  const auto app = command_app("devices", "List the CUDA devices flexinfer can use.");
  if (!parse_command_line(*app, argc, argv, 2)) return 0;
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
