#pragma once
// The flexinfer subcommands; each returns the process exit code.
namespace fi {
int command_generate(int argc, char** argv);
int command_tokenize(int argc, char** argv);
int command_logits(int argc, char** argv);
int command_inspect(int argc, char** argv);
int command_make_model(int argc, char** argv);
int command_stack_experts(int argc, char** argv);
int command_devices(int argc, char** argv);
int command_bench(int argc, char** argv);
int command_probe(int argc, char** argv);
int command_plan(int argc, char** argv);
int command_chat(int argc, char** argv);
int command_template(int argc, char** argv);
int command_serve(int argc, char** argv);
}  // namespace fi
