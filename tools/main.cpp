// flexinfer: run llama-architecture GGUF models on what the machine has.
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "io/error.h"
#include "tools/commands.h"

namespace {

const char* const kUsage =
    "usage: flexinfer COMMAND [options]   (flexinfer COMMAND --help for its options)\n"
    "  generate    generate text from a prompt\n"
    "  tokenize    show the token ids of a text\n"
    "  logits      write the logits of every prompt position to a file\n"
    "  inspect     show a GGUF file's metadata, tensors and bytes per layer\n"
    "  make-model  write a random-weight llama GGUF of a realistic shape\n"
    "  bench       measure prefill and decode speed against the limit of the memory budget\n"
    "  probe       measure this machine's disk, memory and CPU (saved for plan and bench)\n"
    "  plan        show where a model's bytes live under a memory budget, and the predicted speed\n"
    "  devices     list the CUDA devices flexinfer can use\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  try {
    if (command == "generate") return fi::command_generate(argc, argv);
    if (command == "tokenize") return fi::command_tokenize(argc, argv);
    if (command == "logits") return fi::command_logits(argc, argv);
    if (command == "inspect") return fi::command_inspect(argc, argv);
    if (command == "make-model") return fi::command_make_model(argc, argv);
    if (command == "devices") return fi::command_devices(argc, argv);
    if (command == "bench") return fi::command_bench(argc, argv);
    if (command == "probe") return fi::command_probe(argc, argv);
    if (command == "plan") return fi::command_plan(argc, argv);
    std::fprintf(stderr, "flexinfer: unknown command '%s' (see 'flexinfer --help')\n", command.c_str());
    return 2;
  } catch (const fi::Error& error) {
    std::fprintf(stderr, "flexinfer: error: %s\n", error.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "flexinfer: error: out of memory\n");
  } catch (const std::exception& error) {
    std::fprintf(stderr, "flexinfer: error: %s\n", error.what());
  }
  return 1;
}
