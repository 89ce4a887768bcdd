// flexinfer: run GGUF language models on what the machine has.
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "io/error.h"
#include "io/log.h"
#include "tools/cli.h"
#include "tools/command_support.h"
#include "tools/commands.h"

namespace {

const char* const kUsage =
    "usage: flexinfer COMMAND [options]   (flexinfer COMMAND --help for its options)\n"
    "  generate       generate text from a prompt\n"
    "  chat           chat with a model in the terminal\n"
    "  serve          an OpenAI-compatible HTTP server (concurrent requests decoded together)\n"
    "  template       print the prompt a chat template makes of a conversation\n"
    "  tokenize       show the token ids of a text\n"
    "  logits         write the logits of every prompt position to a file\n"
    "  inspect        show a GGUF file's metadata, tensors and bytes per layer\n"
    "  make-model     write a random-weight GGUF of a realistic shape\n"
    "  stack-experts  rewrite a GGUF whose experts are one tensor each with them stacked\n"
    "  bench          measure prefill and decode speed against the limit of the memory budget\n"
    "  probe          measure this machine's disk, memory and CPU (saved for plan and bench)\n"
    "  plan           show where a model's bytes live under a memory budget, and the predicted speed\n"
    "  devices        list the CUDA devices flexinfer can use\n"
    "  --version      print the version and what this build can use\n";

struct Command {
  const char* name;
  int (*run)(int argc, char** argv);
};
constexpr Command kCommands[] = {
    {"generate", fi::command_generate}, {"chat", fi::command_chat},         {"template", fi::command_template},
    {"tokenize", fi::command_tokenize}, {"logits", fi::command_logits},
    {"inspect", fi::command_inspect},   {"make-model", fi::command_make_model},
    {"stack-experts", fi::command_stack_experts}, {"devices", fi::command_devices},
    {"bench", fi::command_bench},       {"probe", fi::command_probe},       {"plan", fi::command_plan},
    {"serve", fi::command_serve},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  if (command == "--version") {
    std::printf("flexinfer %s (%s)\n", FLEXINFER_VERSION, fi::build_features().c_str());
    return 0;
  }
  try {
    for (const Command& known : kCommands)
      if (command == known.name) return known.run(argc, argv);
    throw fi::UsageError("unknown command '" + command + "' (see 'flexinfer --help')");
  } catch (const fi::UsageError& error) {
    fi::report_error(error.what());
    return 2;
  } catch (const fi::Error& error) {
    fi::report_error(error.what());
  } catch (const std::bad_alloc&) {
    fi::report_error("out of memory");
  } catch (const std::exception& error) {
    fi::report_error(error.what());
  }
  return 1;
}
